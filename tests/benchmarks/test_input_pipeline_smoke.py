"""benchmarks/input_pipeline.py at a tiny size: it runs and its peer is faithful.

No timing is checked. The benchmark leans on private helpers of
`vtlearn.data.pipeline`; these tests fail when they drift apart.
"""

from pathlib import Path

import numpy as np
import pytest

from vtlearn.data import pipeline, records
from vtlearn.data import schema as S
from vtlearn.data.text import Vocabulary

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "input_pipeline.py"
BATCH = 4


@pytest.fixture()
def cfg(tmp_path):
    """Two 20-s videos of 40x48 noise frames at 10 fps in 10-s chunks."""
    rng = np.random.default_rng(0)
    for v in range(2):
        starts = np.arange(0.0, 18.0, 3.0)
        video = S.Video(
            f"v{v}", 20.0, S.Captions([f"w{i} cut" for i in range(len(starts))], starts,
                                      starts + 2.5),
            frames=rng.integers(0, 256, (200, 40, 48, 3), np.uint8), frame_rate=10.0,
            category=v)
        records.write_tfrecord(tmp_path / f"train-{v}.tfrecord",
                               records.video_to_examples(video, 10.0))
    Vocabulary([f"w{i}" for i in range(6)] + ["cut"]).save(tmp_path / "vocab.txt")
    cfg = pipeline.default_config()
    cfg.update(train_files=str(tmp_path / "train-*.tfrecord"),
               vocab_path=str(tmp_path / "vocab.txt"), num_frames=4, fps=5.0, crop_size=24,
               num_candidates=2, shuffle_buffer=4)
    return cfg


def test_peer_yields_the_pipelines_batches(bench, cfg):
    totals, difference = bench.compare_readers(cfg, BATCH, rounds=1, warmup_s=0.0,
                                               seconds=0.0)
    for reader in (bench.SELECTIVE, *bench.PEERS):
        assert totals[reader].clips == BATCH
    assert 0.0 <= difference < 128  # only crop-border chroma may differ (0-255 levels)
    # The report renders from what was measured (its values are the benchmark's business).
    rows = bench.setting_rows("smoke", cfg, bench.record_stats(cfg.train_files), totals,
                              difference)
    assert [bench.SELECTIVE in rows[0], bench.DMVR in rows[1], bench.DECODE_ALL in rows[2]] == [
        True, True, True]
    assert len(rows) == 6 and "ratio selective / DMVR-style" in rows[3]
    assert "ratio selective / decode-all" in rows[4]


def test_same_batch_check_catches_a_different_sample(bench, cfg):
    batch = next(pipeline.build_train_dataset(cfg, BATCH).as_numpy_iterator())
    shifted = dict(batch, video=np.roll(batch["video"], 1, axis=1))
    with pytest.raises(AssertionError):
        bench.check_same_batches(batch, shifted)
    assert bench.check_same_batches(batch, dict(batch)) == 0.0


def test_record_stats(bench, cfg):
    stats = bench.record_stats(cfg.train_files)
    files = pipeline.list_files(cfg.train_files)
    assert stats.records == 4 and stats.frames_per_record == 100
    assert stats.bytes_per_record == sum(Path(f).stat().st_size for f in files) / 4
    jpegs = [f for path in files for chunk in records.read_chunks(path) for f in chunk[S.FRAMES]]
    assert stats.bytes_per_frame == pytest.approx(np.mean([len(f) for f in jpegs]))


def test_stage_cuts(bench, cfg):
    first = {stage: next(ds.as_numpy_iterator())
             for stage, ds in bench.stage_datasets(cfg, BATCH).items()}
    assert list(first) == list(bench.STAGES)
    assert first["read"].shape == (BATCH,) and first["parse"].shape[0] == BATCH
    clip = (BATCH, cfg.num_frames, cfg.crop_size, cfg.crop_size, 3)
    for stage, dtype in (("decode", np.uint8), ("flip", np.uint8), ("float", np.float32),
                         ("pipeline", np.uint8)):
        assert first[stage].shape == clip and first[stage].dtype == dtype, stage
    for decoded, flipped in zip(first["decode"], first["flip"]):
        assert (np.array_equal(flipped, decoded)
                or np.array_equal(flipped, decoded[:, :, ::-1])) and flipped.std() > 0
    # Flipping before or after the float conversion gives the same clips.
    np.testing.assert_array_equal(first["flip"], first["pipeline"])
