"""benchmarks/youcook2_protocol.py: its per-clip peer decodes the evaluator's windows.

No timing is checked, and no model runs: the peer's windows (its own seek and
decode of the video file) are compared with the windows the evaluator's
pipeline cuts from the converted records, on the tiny lab's YouCook2 export.
"""

from pathlib import Path

import numpy as np

from vtlearn import sharding
from vtlearn.config_defaults import load_config
from vtlearn.data import lab, lab_exports, pipeline, sources
from vtlearn.data.convert import VIDEO_EXTENSIONS, find_files
from vtlearn.evaluation import youcook2
from vtlearn.evaluation.base import section

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "youcook2_protocol.py"


def test_the_peer_decodes_the_evaluators_windows(bench, tmp_path):
    config = load_config(f"{ROOT}/configs/milnce_s3d.py:tiny")
    config.data.lab_dir = str(tmp_path / "lab")
    config = sources.resolve_data(config)
    data_dir = lab_exports.export(lab.LabConfig(**config.lab.to_dict()), "youcook2",
                                  tmp_path / "yc2")
    config.evals.yc = section("youcook2", every=0, data_dir=str(data_dir),
                              cache_dir=str(tmp_path / "cache"), num_clips=3)
    evaluator = youcook2.Evaluator(None, sharding.make_mesh(), config, "yc")
    files = evaluator.convert(evaluator.video_sources).files
    cfg = config.data.copy_and_resolve_references()
    cfg.eval_text_key = ""
    batch = next(pipeline.iterate_eval(cfg, 64, evaluator.units, files=files))
    videos = find_files(data_dir, VIDEO_EXTENSIONS, recursive=True)
    span = cfg.num_frames / cfg.fps
    checked = 0
    for i in np.flatnonzero(batch["valid"]):
        vid = batch["video_id"][i].decode()
        starts = bench.window_starts(float(batch["start"][i]), float(batch["end"][i]), span, 3)
        for c, start in enumerate(starts):
            peer = bench.decode_window(videos[vid], start, cfg.num_frames, cfg.fps,
                                       cfg.eval_crop_size).astype(float)
            later = bench.decode_window(videos[vid], start + 2 / cfg.fps, cfg.num_frames,
                                        cfg.fps, cfg.eval_crop_size).astype(float)
            ours = batch["video"][i, c].astype(float)
            assert peer.shape == ours.shape
            error = np.abs(peer - ours).mean()  # a JPEG round trip apart
            assert error < 6 and error < np.abs(later - ours).mean(), (vid, c)
            checked += 1
    assert checked >= 6
