"""The tf.data pipeline against NumPy references of the papers' sampling rules."""

import numpy as np
import pytest

from vtlearn.data import pipeline, records
from vtlearn.data import schema as S
from vtlearn.data.text import Vocabulary

STORED_FPS = 10.0
FRAME = (40, 48)  # stored frame height, width


def _video(vid, starts, ends, duration, words=None, category=0, audio=True, features=True):
    """A video (<= 25 s) whose frame i has brightness i; caption i says 'w<i> cut'."""
    n = int(round(duration * STORED_FPS))
    assert n <= 256
    values = np.arange(n).astype(np.uint8)
    frames = np.broadcast_to(values[:, None, None, None], (n,) + FRAME + (3,)).copy()
    texts = words if words is not None else [f"w{i} cut" for i in range(len(starts))]
    sr = 100
    t = np.arange(int(duration * sr)) / sr
    return S.Video(
        vid, duration, S.Captions(texts, starts, ends, clean=[f"clean w{i}" for i in
                                                              range(len(texts))]),
        frames=frames, frame_rate=STORED_FPS,
        waveform=(t / duration).astype(np.float32) if audio else None, sample_rate=sr,
        features_2d=np.arange(int(duration))[:, None] * np.ones((1, 3)) if features else None,
        feature_rate=1.0, category=category)


@pytest.fixture()
def data_dir(tmp_path):
    rng = np.random.default_rng(0)
    for v in range(4):
        n = 6
        starts = np.sort(rng.uniform(0, 22, n)).round(1)
        ends = np.minimum(starts + rng.uniform(0.5, 5, n).round(1), 25.0)
        ex = records.video_to_examples(_video(f"v{v}", starts, ends, 25.0, category=v), 10.0)
        records.write_tfrecord(tmp_path / f"train-{v}.tfrecord", ex)
    words = [f"w{i}" for i in range(12)] + ["cut", "clean"]
    Vocabulary(words).save(tmp_path / "vocab.txt")
    return tmp_path


def _cfg(d, **kw):
    cfg = pipeline.default_config()
    cfg.train_files = str(d / "train-*.tfrecord")
    cfg.eval_files = cfg.train_files
    cfg.vocab_path = str(d / "vocab.txt")
    cfg.num_frames, cfg.fps, cfg.crop_size, cfg.eval_crop_size = 8, 5.0, 32, 40
    cfg.num_candidates, cfg.shuffle_buffer = 3, 8
    cfg.audio_seconds, cfg.audio_rate, cfg.features_2d = 1.0, 100, 3
    cfg.update(kw)
    return cfg


def _captions(d):
    """category -> (starts, ends) read back from the records (NumPy)."""
    out = {}
    for path in sorted(d.glob("train-*.tfrecord")):
        for c in records.read_chunks(path):
            out[int(c[S.CATEGORY])] = (c[S.CAPTION_START], c[S.CAPTION_END])
    return out


def _frame_index(clip):
    """Stored frame indices from the brightness of a clip [..., T, H, W, 3]."""
    return np.round(clip.mean(axis=(-3, -2, -1))).astype(int)


def test_clip_sampler_follows_milnce_rules(data_dir):
    cfg = _cfg(data_dir)
    batch = next(pipeline.iterate_train(cfg, 16))
    assert batch["video"].shape == (16, 8, 32, 32, 3)
    assert batch["text"].shape == (16, 3, 16) and batch["text_mask"].shape == (16, 3)
    assert batch["audio"].shape == (16, 100) and batch["features_2d"].shape == (16, 3)
    assert batch["video"].dtype == np.uint8
    vocab = Vocabulary.load(cfg.vocab_path)
    caps = _captions(data_dir)
    for i in range(16):
        st, en = caps[int(batch["label"][i])]
        idx = _frame_index(batch["video"][i])
        np.testing.assert_allclose(np.diff(idx), 2, atol=1)  # 10 fps stored, 5 fps clip
        ids = [int(vocab.decode(t).split()[0][1:]) for t, m in
               zip(batch["text"][i], batch["text_mask"][i]) if m]
        anchor = ids[0]
        # Reference: candidates are the anchor then the nearest caption centers.
        dist = np.abs((st + en) / 2 - (st[anchor] + en[anchor]) / 2)
        dist[anchor] = -1
        assert ids == list(np.argsort(dist, kind="stable")[:3])
        # The clip lies inside the anchor caption widened to 5 s and in its chunk.
        pad = max(0.0, (5.0 - (en[anchor] - st[anchor])) / 2)
        chunk = np.floor(idx[0] / STORED_FPS / 10.0) * 10.0
        lo, hi = max(st[anchor] - pad, chunk), min(en[anchor] + pad, chunk + 10.0)
        assert lo - 0.1 <= idx[0] / STORED_FPS and idx[-1] / STORED_FPS <= hi, (i, lo, hi, idx)
        # Audio (a ramp t / duration) is centered on the clip.
        center = (idx[0] / STORED_FPS + 0.8)
        assert abs(batch["audio"][i][50] * 25.0 - center) < 0.3
        # Features: mean of per-second values (= second index) over the clip.
        assert abs(batch["features_2d"][i][0] - (idx[0] / STORED_FPS + 0.8)) < 1.1


def test_short_captions_widen_to_five_seconds(tmp_path):
    # One 1-second caption at 20..21 s: the 3.2 s clip must fit in 18..23 s.
    ex = records.video_to_examples(_video("v", [20.0], [21.0], 25.0, words=["w0"]), 25.0)
    records.write_tfrecord(tmp_path / "a.tfrecord", ex)
    Vocabulary(["w0"]).save(tmp_path / "vocab.txt")
    cfg = _cfg(tmp_path, train_files=str(tmp_path / "a.tfrecord"), num_frames=32, fps=10.0,
               num_candidates=1, audio_seconds=0.0, features_2d=0)
    batch = next(pipeline.iterate_train(cfg, 32))
    idx = _frame_index(batch["video"])
    first, last = idx[:, 0], idx[:, -1]
    assert np.all(first >= 18.0 * STORED_FPS - 1) and np.all(last <= 23.0 * STORED_FPS)
    assert first.max() - first.min() > 5  # the start is random within the window


def test_sequence_sampler_takes_consecutive_pairs(data_dir):
    cfg = _cfg(data_dir, sampler="sequence", num_pairs=4)
    batch = next(pipeline.iterate_train(cfg, 8))
    assert batch["video"].shape == (8, 4, 8, 32, 32, 3)
    assert batch["text"].shape == (8, 4, 16)
    vocab = Vocabulary.load(cfg.vocab_path)
    for i in range(8):
        ids = [int(vocab.decode(t).split()[0][1:]) for t, m in
               zip(batch["text"][i], batch["text_mask"][i]) if m]
        assert len(ids) >= 1
        # Consecutive among the usable captions: increasing caption indices.
        assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_sequence_sampler_masks_short_videos(tmp_path):
    ex = records.video_to_examples(_video("v", [2.0, 10.0], [6.0, 14.0], 20.0), 20.0)
    records.write_tfrecord(tmp_path / "a.tfrecord", ex)
    Vocabulary(["w0", "w1"]).save(tmp_path / "vocab.txt")
    cfg = _cfg(tmp_path, train_files=str(tmp_path / "a.tfrecord"), sampler="sequence",
               num_pairs=4)
    batch = next(pipeline.iterate_train(cfg, 2))
    np.testing.assert_array_equal(batch["text_mask"], [[1, 1, 0, 0]] * 2)
    assert np.all(batch["video"][:, 2:] == 0) and np.all(batch["text"][:, 2:] == 0)
    # Records without steps: no ground truth (-1), and no error.
    np.testing.assert_array_equal(batch["caption_step"], -1)
    np.testing.assert_array_equal(batch["clip_step"], -1)


def test_sequence_sampler_reports_each_captions_and_clips_ground_truth_step(tmp_path):
    v = _video("v", [2.0, 10.0, 15.0], [6.0, 14.0, 19.0], 20.0)
    v.captions.step = np.array([1, -1, 0])  # caption 1 is chatter
    # Step 0 spans 9-20 s, step 1 spans 0-8 s: caption 2's clip lies in step 0, and
    # so does caption 1's (chatter narrated during step 0).
    v.segments = S.Segments(np.array([4, 2]), np.array([9.0, 0.0]), np.array([20.0, 8.0]))
    records.write_tfrecord(tmp_path / "a.tfrecord", records.video_to_examples(v, 20.0))
    Vocabulary(["w0", "w1", "w2"]).save(tmp_path / "vocab.txt")
    cfg = _cfg(tmp_path, train_files=str(tmp_path / "a.tfrecord"), sampler="sequence",
               num_pairs=3)
    batch = next(pipeline.iterate_train(cfg, 2))
    np.testing.assert_array_equal(batch["caption_step"], [[1, -1, 0]] * 2)
    np.testing.assert_array_equal(batch["clip_step"], [[1, 0, 0]] * 2)


def test_deterministic_under_seed_and_resumable(data_dir):
    cfg = _cfg(data_dir)
    a = [next(it) for it in [pipeline.iterate_train(cfg, 4)] for _ in range(3)]
    b = [next(it) for it in [pipeline.iterate_train(cfg, 4)] for _ in range(3)]
    for x, y in zip(a, b):
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])
    # Resuming at the position after batch 1 reproduces batch 2.
    resumed = next(pipeline.iterate_train(cfg, 4, start_index=int(a[0]["index"][-1]) + 1))
    for k in a[1]:
        np.testing.assert_array_equal(resumed[k], a[1][k])
    cfg.seed = 1
    c = next(pipeline.iterate_train(cfg, 4))
    assert not np.array_equal(c["video"], a[0]["video"])


def _spoil_first_record(path):
    """Overwrites the first record's payload in place: reading it fails its CRC."""
    data = bytearray(path.read_bytes())
    length = int.from_bytes(data[:8], "little")
    data[12:12 + length] = b"\xff" * length
    path.write_bytes(bytes(data))


def test_a_saved_stream_continues_exactly_without_reading_what_it_used(tmp_path):
    """The restored stream yields what the uninterrupted one does; its files'
    first records, read before the save, are spoiled afterwards and never read
    again (skipping to the position instead would read them)."""
    rng = np.random.default_rng(0)
    for v in range(8):
        starts = np.sort(rng.uniform(0, 22, 8)).round(1)
        ends = np.minimum(starts + rng.uniform(0.5, 3, 8).round(1), 25.0)
        records.write_tfrecord(tmp_path / f"train-{v}.tfrecord", records.video_to_examples(
            _video(f"v{v}", starts, ends, 25.0, category=v), 5.0))  # 5 records each
    Vocabulary([f"w{i}" for i in range(12)] + ["cut"]).save(tmp_path / "vocab.txt")
    cfg = _cfg(tmp_path)
    uninterrupted = pipeline.iterate_train(cfg, 4)
    expected = [next(uninterrupted) for _ in range(4)]
    stream = pipeline.iterate_train(cfg, 4)
    used = [next(stream) for _ in range(2)]
    stream.save(str(tmp_path / "position"))
    position = int(used[-1]["index"][-1]) + 1
    for path in tmp_path.glob("train-*.tfrecord"):
        _spoil_first_record(path)
    resumed = pipeline.iterate_train(cfg, 4, start_index=position,
                                     resume_from=str(tmp_path / "position"))
    assert resumed.restored
    for want in expected[2:]:
        got = next(resumed)
        for k in want:
            np.testing.assert_array_equal(got[k], want[k])
    with pytest.raises(Exception, match="train-"):  # the skipping stream reads them
        next(pipeline.iterate_train(cfg, 4, start_index=position))


def test_files_are_split_between_processes(data_dir):
    pattern = str(data_dir / "train-*.tfrecord")
    parts = [pipeline.list_files(pattern, i, 3) for i in range(3)]
    flat = sorted(f for p in parts for f in p)
    assert flat == sorted(str(p) for p in data_dir.glob("train-*.tfrecord"))
    assert all(set(p).isdisjoint(q) for i, p in enumerate(parts) for q in parts[i + 1:])
    with pytest.raises(ValueError, match="Process 4 of 5 gets no file"):
        pipeline.list_files(pattern, 4, 5)
    with pytest.raises(ValueError, match="matches no file"):
        pipeline.list_files(str(data_dir / "nothing-*.tfrecord"))
    with pytest.raises(ValueError, match="empty"):
        pipeline.list_files("")


def test_unusable_records_are_skipped_and_counted(tmp_path):
    good = _video("good", [2.0, 8.0], [6.0, 12.0], 16.0)
    no_captions = _video("nocap", [], [], 16.0, words=[])
    oov = _video("oov", [2.0], [6.0], 16.0, words=["zzz qqq"])
    too_short = _video("short", [0.2], [0.9], 1.0)  # 1 s video, 1.6 s clip
    for name, v in [("a", good), ("b", no_captions), ("c", oov), ("d", too_short)]:
        records.write_tfrecord(tmp_path / f"{name}.tfrecord", records.video_to_examples(v))
    Vocabulary(["w0", "w1", "cut"]).save(tmp_path / "vocab.txt")
    cfg = _cfg(tmp_path, train_files=str(tmp_path / "*.tfrecord"), shuffle_buffer=1,
               cycle_length=1)
    skips = pipeline.SkipCounter()
    it = pipeline.iterate_train(cfg, 3, skips=skips)
    batches = [next(it) for _ in range(4)]
    for b in batches:
        assert np.all(b["text_mask"][:, 0])
        assert np.all(b["video"].reshape(3, -1).max(-1) > 0)  # real frames
    # 12 good samples were drawn; every pass over the 4 files skipped 3: one
    # without captions and one with only unknown words (no_caption), one too short
    # for a clip (no_clip).
    counts = skips.counts
    assert counts["no_caption"] >= 6 and counts["no_clip"] >= 3 and counts["no_audio"] == 0


def test_corrupt_record_error_names_file(tmp_path, data_dir):
    bad = tmp_path / "bad.tfrecord"
    raw = (data_dir / "train-0.tfrecord").read_bytes()
    bad.write_bytes(raw[:100] + b"\x00garbage" * 50 + raw[500:])
    cfg = _cfg(data_dir, train_files=str(bad))
    with pytest.raises(records.RecordError, match="bad.tfrecord: record 0 is corrupt"):
        next(pipeline.iterate_train(cfg, 2))


def test_missing_required_key_error_names_key(tmp_path, data_dir):
    import tensorflow as tf

    ex = tf.train.SequenceExample()
    ex.context.feature[S.DURATION].float_list.value.append(10.0)
    path = tmp_path / "nokey.tfrecord"
    records.write_tfrecord(path, [ex.SerializeToString()])
    cfg = _cfg(data_dir, train_files=str(path))
    with pytest.raises(records.RecordError, match="nokey.tfrecord: record 0.*video/id"):
        next(pipeline.iterate_train(cfg, 2))


def _serialized_records(path):
    return [raw.numpy() for raw in records.read_serialized(path)]


def _damage(path, index, kind):
    """Rewrites record `index` of `path`: flipped bytes (its checksum fails) or
    a record without the required video id."""
    import tensorflow as tf

    raws = _serialized_records(path)
    if kind == "no_key":
        ex = tf.train.SequenceExample.FromString(raws[index])
        del ex.context.feature[S.VIDEO_ID]
        raws[index] = ex.SerializeToString()
    records.write_tfrecord(path, raws)
    if kind == "corrupt":
        data = bytearray(path.read_bytes())
        offset = sum(16 + len(r) for r in raws[:index]) + 12  # framing: 12 + data + 4
        data[offset + 10:offset + 20] = b"\xff" * 10
        path.write_bytes(bytes(data))


@pytest.mark.parametrize("kind", ["corrupt", "no_key"])
@pytest.mark.parametrize("stream", ["train", "eval"])
def test_a_bad_record_is_named_from_where_the_reader_is(tmp_path, data_dir, monkeypatch,
                                                        kind, stream):
    # Eight files of nine records; record 5 of one file is bad.
    for f in range(8):
        videos = [_video(f"f{f}v{v}", [1.0, 11.0, 21.0], [6.0, 16.0, 24.0], 25.0)
                  for v in range(3)]
        records.write_tfrecord(tmp_path / f"shard-{f}.tfrecord",
                               [e for v in videos for e in records.video_to_examples(v, 10.0)])
    _damage(tmp_path / "shard-5.tfrecord", 5, kind)
    Vocabulary.load(data_dir / "vocab.txt").save(tmp_path / "vocab.txt")
    cfg = _cfg(tmp_path, train_files=str(tmp_path / "shard-*.tfrecord"), cycle_length=3)
    cfg.eval_files = cfg.train_files
    # Naming it reads single records, never a file from its start.
    reads = []
    monkeypatch.setattr(records, "read_serialized", lambda *a: pytest.fail("rescanned"))
    read_record = records.read_record
    monkeypatch.setattr(records, "read_record",
                        lambda path, index: reads.append((path, index)) or read_record(path, index))
    reason = ("is corrupt" if kind == "corrupt"
              else "is not a valid vtlearn chunk: missing.*video/id")
    with pytest.raises(records.RecordError, match=f"shard-5.tfrecord: record 5 {reason}"):
        if stream == "train":
            batches = pipeline.iterate_train(cfg, 4)
            for _ in range(100):  # 18 batches are an epoch: the first reaches it
                next(batches)
        else:
            list(pipeline.iterate_eval(cfg, 4))
    # One record per opening of a file or per record in flight, where a rescan
    # reads all 72.
    assert 1 <= len(reads) <= 16, reads


def test_an_error_not_from_a_record_rereads_no_file(data_dir, monkeypatch):
    # "video" units refuse a video cut into chunks: a pipeline error on a record
    # that parsed, so only records read ahead and not yet parsed are read again.
    reads = []
    read_record = records.read_record
    monkeypatch.setattr(records, "read_record",
                        lambda path, index: reads.append((path, index)) or read_record(path, index))
    monkeypatch.setattr(records, "read_serialized", lambda *a: pytest.fail("rescanned"))
    cfg = _cfg(data_dir)
    with pytest.raises(Exception, match="need each video in one record") as error:
        list(pipeline.iterate_eval(cfg, 4, pipeline.Units("video")))
    assert not isinstance(error.value, records.RecordError)
    assert len(reads) <= 3, reads  # of 12 records


def test_eval_emits_every_caption_once_with_even_clips(data_dir):
    cfg = _cfg(data_dir, eval_text_key=S.CAPTION_CLEAN, eval_num_clips=3)
    batches = list(pipeline.iterate_eval(cfg, 8))
    valid = np.concatenate([b["valid"] for b in batches])
    video_ids = np.concatenate([b["video_id"] for b in batches])[valid]
    text = np.concatenate([b["text"] for b in batches])[valid]
    assert batches[0]["video"].shape == (8, 3, 8, 40, 40, 3)
    assert batches[0]["audio"].shape == (8, 3, 100)
    vocab = Vocabulary.load(cfg.vocab_path)
    expected = []
    for path in sorted(data_dir.glob("train-*.tfrecord")):
        chunk = next(records.read_chunks(path))
        expected += [(chunk[S.VIDEO_ID].decode(), k) for k in range(len(chunk[S.CAPTION]))]
    got = sorted((v.decode(), int(vocab.decode(t[0]).split()[1][1:])) for v, t in
                 zip(video_ids, text))
    assert got == sorted(expected)
    # The C clips of a unit are evenly spaced over its window, in time order.
    firsts = _frame_index(batches[0]["video"][0])[:, 0]
    assert firsts[0] < firsts[1] < firsts[2]
    np.testing.assert_allclose(firsts[2] - firsts[1], firsts[1] - firsts[0], atol=1)


def test_segment_eval_units_carry_labels(tmp_path):
    v = _video("v", [1.0, 9.0], [5.0, 13.0], 20.0, category=7)
    v.segments = S.Segments(np.array([4, 9]), np.array([0.0, 8.0]), np.array([6.0, 14.0]))
    records.write_tfrecord(tmp_path / "a.tfrecord", records.video_to_examples(v, 10.0))
    Vocabulary(["w0", "w1"]).save(tmp_path / "vocab.txt")
    cfg = _cfg(tmp_path, eval_files=str(tmp_path / "a.tfrecord"))
    (batch,) = list(pipeline.iterate_eval(cfg, 4, pipeline.Units("segment")))
    np.testing.assert_array_equal(batch["label"][batch["valid"]], [4, 9])


def test_feature_sampling_without_frames(data_dir):
    """MCN/Hessel mode: no pixels; window-pooled features and audio per caption."""
    cfg = _cfg(data_dir, video=False, num_candidates=1)
    batch = next(pipeline.iterate_train(cfg, 8))
    assert "video" not in batch and batch["features_2d"].shape == (8, 3)
    caps = _captions(data_dir)
    vocab = Vocabulary.load(cfg.vocab_path)
    for i in range(8):
        st, en = caps[int(batch["label"][i])]
        a = int(vocab.decode(batch["text"][i, 0]).split()[0][1:])
        pad = max(0.0, (5.0 - (en[a] - st[a])) / 2)
        matches = []
        for chunk in (0.0, 10.0, 20.0):  # the sample came from one of the chunks
            lo, hi = max(st[a] - pad, chunk), min(en[a] + pad, chunk + 10.0, 25.0)
            if hi <= lo:
                continue
            # Reference: mean of per-second features (= second index) overlapping
            # [lo, hi); audio (a ramp t / 25) centered on the window.
            feature = np.mean([s for s in range(int(chunk), int(chunk) + 10) if s < hi and s + 1 > lo])
            matches.append(abs(batch["features_2d"][i][0] - feature) < 1e-4
                           and abs(batch["audio"][i][50] * 25.0 - (lo + hi) / 2) < 0.05)
        assert any(matches), (i, a)


@pytest.mark.parametrize("sampler", ["clip", "sequence", "segments", "merged"])
def test_samplers_declare_what_they_yield(data_dir, sampler):
    from vtlearn.data.samplers import get_sampler

    cfg = _cfg(data_dir, sampler=sampler, num_pairs=3)
    if sampler == "segments":
        cfg.update(video=False, audio_seconds=0.0)
    batch = next(pipeline.iterate_train(cfg, 4))
    spec = pipeline.sample_spec(cfg)  # what the devices get
    host = pipeline.host_keys(cfg)
    assert host == ("index",) + (("caption_step", "clip_step") if sampler == "sequence" else ())
    assert set(batch) == set(spec) | set(host) and not set(spec) & set(host)
    full = get_sampler(cfg).output_spec() | {"label": ((), np.dtype(np.int32))}
    for key, (shape, dtype) in full.items():
        assert batch[key].shape == (4,) + shape and batch[key].dtype == dtype, key
    empty = get_sampler(cfg).empty()
    assert {k: (tuple(v.shape), v.dtype.as_numpy_dtype) for k, v in empty.items()} == {
        k: (shape, dtype) for k, (shape, dtype) in full.items() if k != "label"}
    assert get_sampler(cfg).clips_per_sample == (1 if sampler == "clip" else 3)


FIRST_CAPTION_SAMPLER = '''
import numpy as np
import tensorflow as tf

from vtlearn.data import clips
from vtlearn.data.samplers import base


class Sampler(base.Sampler):
    """The first usable caption of a record and its window's features."""

    clips_per_sample = 1

    def output_spec(self):
        return {"features_2d": ((self.cfg.features_2d,), np.dtype(np.float32)),
                "text": ((1, self.cfg.max_words), np.dtype(np.int32)),
                "text_mask": ((1,), np.dtype(bool))}

    def sample(self, ex, text_ids, usable, seed):
        first = tf.cast(tf.where(usable)[0, 0], tf.int32)
        lo, hi = clips.caption_windows(ex, self.cfg.min_caption_seconds)
        out = clips.modalities(ex, lo[first][None], hi[first][None], lo[first][None], seed,
                               self.cfg, True)
        return {"features_2d": out["features_2d"][0], "text": text_ids[first][None],
                "text_mask": tf.ones([1], tf.bool)}
'''


def test_a_new_sampler_is_one_module(data_dir, tmp_path, monkeypatch):
    package = tmp_path / "my_samplers"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "first_caption.py").write_text(FIRST_CAPTION_SAMPLER)
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = _cfg(data_dir, sampler="my_samplers.first_caption", video=False, audio_seconds=0.0)
    batch = next(pipeline.iterate_train(cfg, 8))
    assert set(batch) == {"features_2d", "text", "text_mask", "label", "index"}
    vocab = Vocabulary.load(cfg.vocab_path)
    caps = _captions(data_dir)
    for i in range(8):
        # Every caption has in-vocabulary words, so the first usable one of the
        # sample's chunk is the first caption whose window reaches into it.
        starts, ends = caps[int(batch["label"][i])]
        index = int(vocab.decode(batch["text"][i, 0]).split()[0][1:])
        assert 0 <= index < len(starts)
        assert batch["features_2d"][i].shape == (3,)


def test_unknown_sampler_names_the_key_and_the_choices(data_dir):
    message = r"config.data.sampler='nope'.*built in: clip, merged, segments, sequence$"
    with pytest.raises(ValueError, match=message):
        pipeline.sample_spec(_cfg(data_dir, sampler="nope"))


def test_window_units_tile_the_video_once_with_segment_labels(tmp_path):
    v = _video("v", [1.0, 12.0], [5.0, 16.0], 20.0, category=3)
    v.segments = S.Segments(np.array([4, 9]), np.array([0.0, 8.0]), np.array([6.0, 14.0]))
    records.write_tfrecord(tmp_path / "a.tfrecord", records.video_to_examples(v, 10.0))
    Vocabulary(["w0", "w1"]).save(tmp_path / "vocab.txt")
    cfg = _cfg(tmp_path, eval_files=str(tmp_path / "a.tfrecord"), video=False)
    units = pipeline.Units("window", num_clips=1, window_seconds=2.0, stride_seconds=2.0)
    got = [b for b in pipeline.iterate_eval(cfg, 4, units)]
    valid = np.concatenate([b["valid"] for b in got])
    start = np.concatenate([b["start"] for b in got])[valid]
    order = np.argsort(start)
    # Reference: window k is [2k, 2k + 2) of the 20-s video, labelled by the
    # segment holding its centre 2k + 1; the feature of second s is s.
    np.testing.assert_allclose(start[order], 2.0 * np.arange(10))
    label = np.concatenate([b["label"] for b in got])[valid][order]
    expected = [4 if 2 * k + 1 < 6 else 9 if 8 <= 2 * k + 1 < 14 else -1 for k in range(10)]
    np.testing.assert_array_equal(label, expected)
    features = np.concatenate([b["features_2d"] for b in got])[valid][order]
    np.testing.assert_allclose(features[:, 0, 0], 2.0 * np.arange(10) + 0.5)
    assert set(np.concatenate([b["category"] for b in got])[valid]) == {3}
    with pytest.raises(ValueError, match="window_seconds > 0"):
        pipeline.Units("window", window_seconds=0.0)


def test_overlapping_text_and_l2_max_pooling_against_numpy():
    import tensorflow as tf

    from vtlearn.data import clips

    rng = np.random.default_rng(0)
    start = np.sort(rng.uniform(0, 30, 7)).astype(np.float32)
    end = (start + rng.uniform(0.5, 4, 7)).astype(np.float32)
    ids = rng.integers(0, 9, (7, 4)).astype(np.int32)  # zeros are padding
    lo = rng.uniform(0, 30, 12).astype(np.float32)
    hi = lo + 5
    got = clips.overlapping_text(tf.constant(ids), start, end, lo, hi, 6).numpy()
    for w in range(12):
        words = [i for j in range(7) if start[j] < hi[w] and end[j] > lo[w]
                 for i in ids[j] if i]
        np.testing.assert_array_equal(got[w], (words + [0] * 6)[:6])
    feats = rng.normal(size=(30, 5)).astype(np.float32)  # one step per second from 0
    pooled = clips._window_pool(feats, 1.0, 0.0, lo, hi, "l2_max").numpy()
    unit = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    for w in range(12):
        inside = [s for s in range(30) if s < hi[w] and s + 1 > lo[w]]
        np.testing.assert_allclose(pooled[w], unit[inside].max(0), rtol=1e-5)


def test_segments_sampler_follows_hessel_rules(data_dir):
    cfg = _cfg(data_dir, sampler="segments", num_pairs=4, video=False, audio_seconds=0.0,
               candidate_segments=16, feature_pooling="l2_max")
    batch = next(pipeline.iterate_train(cfg, 8))
    vocab = Vocabulary.load(cfg.vocab_path)
    caps = _captions(data_dir)
    grid = np.arange(0.0, 25.0, 0.05)
    for i in range(8):
        starts, ends = caps[int(batch["label"][i])]
        words = [vocab.encode(f"w{j} cut", 16)[:2] for j in range(len(starts))]
        assert batch["text_mask"][i].any()
        for k in np.flatnonzero(batch["text_mask"][i]):
            text = batch["text"][i, k]
            # Reference: the words of the captions overlapping some 5-s segment
            # [t, t + 5) of one chunk ([0, 10), [10, 20) or [20, 25)).
            def words_at(t):
                chunk_end = min(10.0 * (t // 10.0) + 10.0, 25.0)
                if t + 5.0 > chunk_end + 1e-6 and t % 10.0 > 1e-6:
                    return None
                hi = min(t + 5.0, chunk_end)
                ids = [w for j in range(len(starts)) if starts[j] < hi and ends[j] > t
                       for w in words[j]]
                return (ids + [0] * 16)[:16]
            assert any(words_at(t) == list(text) for t in grid), (i, k)
        assert not batch["text"][i][~batch["text_mask"][i]].any()
        # Features: max of L2-normalised steps, so every entry is at most 1.
        assert np.all(batch["features_2d"][i] <= 1 + 1e-6)


def test_training_can_be_restricted_to_some_categories(data_dir):
    cfg = _cfg(data_dir, train_categories=(1, 3))
    labels = np.concatenate([b["label"] for _, b in zip(range(3),
                                                        pipeline.iterate_train(cfg, 8))])
    assert set(labels) == {1, 3}  # the fixture's four videos have categories 0-3


def test_records_that_never_yield_a_sample_stop_training_with_the_reason(tmp_path, data_dir):
    """Training used to spin forever inside tf.data (ignoring SIGTERM) on these."""
    # Only empty shards (what the converter writes when all a shard's videos fail).
    for i in range(2):
        records.write_tfrecord(tmp_path / f"empty-{i}.tfrecord", [])
    cfg = _cfg(data_dir, train_files=str(tmp_path / "empty-*.tfrecord"))
    with pytest.raises(pipeline.NoUsableRecordError, match=r"All 2 training file\(s\) of "
                       r"process 0 are empty \(.*empty-0.tfrecord"):
        pipeline.iterate_train(cfg, 4)
    # Only out-of-vocabulary captions.
    Vocabulary(["nothing", "matches"]).save(tmp_path / "other_vocab.txt")
    cfg = _cfg(data_dir, vocab_path=str(tmp_path / "other_vocab.txt"), max_unusable_in_a_row=50)
    with pytest.raises(pipeline.NoUsableRecordError, match=r"50 training records in a row of "
                       r"4 file\(s\) \(.*train-0.tfrecord.*no_caption=[1-9][0-9]+, no_audio=0, no_clip=0"):
        next(pipeline.iterate_train(cfg, 4))
    # Only videos shorter than the clip.
    cfg = _cfg(data_dir, num_frames=250, fps=5.0, max_unusable_in_a_row=20)
    with pytest.raises(pipeline.NoUsableRecordError, match=r"no_caption=0, no_audio=0, no_clip=[1-9][0-9]+"):
        next(pipeline.iterate_train(cfg, 4))
    # No record of the requested categories.
    cfg = _cfg(data_dir, train_categories=(7,), max_unusable_in_a_row=20)
    with pytest.raises(pipeline.NoUsableRecordError, match=r"train_categories=\(7,\)"):
        next(pipeline.iterate_train(cfg, 4))
    with pytest.raises(ValueError, match="config.data.max_unusable_in_a_row must be > 0"):
        pipeline.iterate_train(_cfg(data_dir, max_unusable_in_a_row=0), 4)


def test_merge_neighbours_follows_the_release_rule():
    from vtlearn.data.samplers.merged import merge_neighbours

    rng = np.random.default_rng(0)
    start = np.cumsum(rng.uniform(0.5, 4.0, 15)).astype(np.float32)
    end = (start + rng.uniform(0.5, 3.0, 15)).astype(np.float32)
    anchors = np.arange(15, dtype=np.int32)
    first, last = (x.numpy() for x in merge_neighbours(start, end, anchors, 10.0))
    for a in anchors:  # the release's loop: grow towards the shorter total span, ties earlier
        lo = hi = a
        while end[hi] - start[lo] < 10.0 and (lo > 0 or hi < 14):
            prev = end[hi] - start[lo - 1] if lo > 0 else np.inf
            nxt = end[hi + 1] - start[lo] if hi < 14 else np.inf
            lo, hi = (lo - 1, hi) if prev <= nxt else (lo, hi + 1)
        assert (first[a], last[a]) == (lo, hi), a


def test_merged_sampler_gives_mcn_clips_with_log_mel_audio(tmp_path):
    """Captions merged to >= 6 s; text, max-then-L2 features and log-mel frames of the span."""
    starts = np.arange(0.0, 24.0, 2.0)  # 12 captions of 1.5 s every 2 s, one chunk
    ex = records.video_to_examples(
        S.Video("v0", 25.0, S.Captions([f"w{i} cut" for i in range(12)], starts, starts + 1.5),
                waveform=np.sin(np.arange(25 * 8000) / 8000 * 2 * np.pi * 440).astype(
                    np.float32), sample_rate=8000,
                features_2d=np.arange(25)[:, None] * np.ones((1, 3)), feature_rate=1.0),
        32.0)
    records.write_tfrecord(tmp_path / "train-0.tfrecord", ex)
    Vocabulary([f"w{i}" for i in range(12)] + ["cut"]).save(tmp_path / "vocab.txt")
    cfg = _cfg(tmp_path, sampler="merged", video=False, num_pairs=6, min_caption_seconds=6.0,
               feature_pooling="max_l2", audio_seconds=4.0, audio_rate=8000,
               audio_features="log_mel")
    batch = next(pipeline.iterate_train(cfg, 2))
    vocab = Vocabulary.load(cfg.vocab_path)
    assert batch["audio"].shape == (2, 6, 400, 40) and batch["text_mask"].all()
    for clip in range(6):
        ids = sorted(int(w[1:]) for w in vocab.decode(batch["text"][0, clip]).split()
                     if w != "cut")
        assert ids == list(range(ids[0], ids[-1] + 1))  # neighbours, in order
        span = starts[ids[-1]] + 1.5 - starts[ids[0]]
        assert span >= 6.0 and (span - 2.0 < 6.0)  # long enough; one caption fewer is not
        np.testing.assert_allclose(batch["span"][0, clip], [starts[ids[0]], starts[ids[-1]] + 1.5])
        features = batch["features_2d"][0, clip]
        np.testing.assert_allclose(features, np.full(3, 1 / np.sqrt(3)), rtol=1e-5)
        # 4 s of audio cut from a span >= 6 s: every frame is real audio.
        assert batch["audio_frames"][0, clip] == 400
        assert np.all(batch["audio"][0, clip] <= 0) and np.any(batch["audio"][0, clip] < -1)


def test_segment_units_widen_to_min_seconds_unless_told_otherwise(tmp_path):
    v = _video("v", [1.0], [2.0], 20.0)  # features_2d: second i has value i
    v.segments = S.Segments(np.array([3]), np.array([4.0]), np.array([6.0]))
    records.write_tfrecord(tmp_path / "a.tfrecord", records.video_to_examples(v, 20.0))
    Vocabulary(["w0"]).save(tmp_path / "vocab.txt")
    cfg = _cfg(tmp_path, eval_files=str(tmp_path / "a.tfrecord"), video=False,
               audio_seconds=0.0, min_caption_seconds=10.0, eval_num_clips=1)

    def pooled(units):
        (batch,) = list(pipeline.iterate_eval(cfg, 1, units))
        return float(batch["features_2d"][0, 0, 0])

    assert pooled(pipeline.Units("segment")) == np.mean(np.arange(0, 10))  # [0, 10) widened
    assert pooled(pipeline.Units("segment", min_seconds=0.0)) == 4.5  # seconds 4 and 5


def test_chunks_without_audio_are_skipped_and_counted_as_such(tmp_path):
    starts = np.arange(0.0, 24.0, 2.0)
    for name, amplitude in (("heard", 1.0), ("silent", 0.0)):
        wave = amplitude * np.sin(np.arange(25 * 8000) / 8000 * 2 * np.pi * 440)
        ex = records.video_to_examples(
            S.Video(name, 25.0, S.Captions(["w0 cut"] * 12, starts, starts + 1.5),
                    waveform=wave.astype(np.float32), sample_rate=8000,
                    features_2d=np.ones((25, 3)), feature_rate=1.0), 32.0)
        records.write_tfrecord(tmp_path / f"train-{name}.tfrecord", ex)
    Vocabulary(["w0", "cut"]).save(tmp_path / "vocab.txt")
    cfg = _cfg(tmp_path, sampler="merged", video=False, num_pairs=2, min_caption_seconds=2.0,
               audio_seconds=1.0, audio_rate=8000, audio_features="log_mel",
               shuffle_buffer=1, cycle_length=1)
    skips = pipeline.SkipCounter()
    it = pipeline.iterate_train(cfg, 2, skips=skips)
    for _ in range(3):  # every clip's log-mel is the tone's, not a silent floor
        audio = next(it)["audio"]
        assert np.all(audio.reshape(4, -1).max(-1) - audio.reshape(4, -1).min(-1) > 1)
    assert skips.counts["no_audio"] >= 2 and skips.counts["no_caption"] == 0


def test_nan_features_stop_training_naming_file_record_key_and_video(tmp_path, data_dir):
    bad = _video("poisoned", [2.0, 8.0], [6.0, 12.0], 25.0)
    bad.features_2d[13, 1] = np.nan  # in its second chunk (10-20 s)
    path = tmp_path / "train-bad.tfrecord"
    records.write_tfrecord(path, records.video_to_examples(bad, 10.0))
    Vocabulary.load(data_dir / "vocab.txt").save(tmp_path / "vocab.txt")
    cfg = _cfg(tmp_path, train_files=str(path))
    with pytest.raises(records.RecordError, match=(
            r"train-bad.tfrecord: record 1 is not a valid vtlearn chunk: "
            r"FEATURES/2d/floats holds NaN or Inf.*\(video poisoned, chunk at 10 s\)")):
        batches = pipeline.iterate_train(cfg, 2)
        for _ in range(10):  # the stream repeats: it reaches the record
            next(batches)
