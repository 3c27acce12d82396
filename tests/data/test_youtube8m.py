"""YouTube-8M frame-level records (the released layout, written here) -> vtlearn records."""

import json

import numpy as np
import pytest
import tensorflow as tf

from vtlearn.data import convert, records, youtube8m
from vtlearn.data import schema as S


def yt8m_example(video_id, labels, rgb, audio):
    """A SequenceExample as YouTube-8M releases it: quantised bytes per second."""
    example = tf.train.SequenceExample()
    example.context.feature["id"].bytes_list.value.append(video_id.encode())
    example.context.feature["labels"].int64_list.value.extend(labels)
    for name, rows in (("rgb", rgb), ("audio", audio)):
        feature_list = example.feature_lists.feature_list[name]
        for row in rows:
            feature_list.feature.add().bytes_list.value.append(np.asarray(row, np.uint8).tobytes())
    return example.SerializeToString()


@pytest.fixture()
def yt8m_dir(tmp_path):
    rng = np.random.default_rng(0)
    videos = {}
    for shard, ids in enumerate((["aa11", "bb22"], ["cc33"])):
        with tf.io.TFRecordWriter(str(tmp_path / f"train{shard}.tfrecord")) as writer:
            for i, vid in enumerate(ids):
                n = 40 + 5 * i
                rgb = rng.integers(0, 256, (n, 1024))
                audio = rng.integers(0, 256, (n, 128))
                labels = [3 + shard, 17] if vid != "cc33" else []
                writer.write(yt8m_example(vid, labels, rgb, audio))
                videos[vid] = (labels, rgb, audio)
    captions = {"aa11": {"start": [1.0, 9.0], "end": [4.0, 12.5], "text": ["hello", "cut it"]},
                "cc33": {"start": [2.0], "end": [3.0], "text": ["welcome"]},
                "zz99": {"start": [0.0], "end": [1.0], "text": ["no such video"]}}
    (tmp_path / "asr.json").write_text(json.dumps(captions))
    return tmp_path, videos


def test_dequantize_matches_the_starter_code_formula():
    q = np.array([0, 1, 127, 255], np.uint8)
    expected = [q_ * 4.0 / 255 + 4.0 / 512 - 2.0 for q_ in q.tolist()]  # max 2, min -2
    np.testing.assert_allclose(youtube8m.dequantize(q), expected, atol=1e-6)  # float32


def test_converts_records_with_features_labels_and_asr(yt8m_dir, tmp_path):
    folder, videos = yt8m_dir
    summary = convert.main(["youtube8m", "--records", str(folder / "train*.tfrecord"),
                            "--captions", str(folder / "asr.json"),
                            "--out_prefix", str(tmp_path / "out/yt"), "--num_shards", "2"])
    assert summary["counts"]["converted"] == 3 and summary["missing"] == ["zz99"]
    chunks = [c for p in sorted((tmp_path / "out").glob("yt-*.tfrecord"))
              for c in records.read_chunks(p, frames=False, features_2d=1024, features_3d=128)]
    by_video = {}
    for c in chunks:
        by_video.setdefault(c[S.VIDEO_ID].decode(), []).append(c)
    assert set(by_video) == set(videos)
    for vid, (labels, rgb, audio) in videos.items():
        parts = sorted(by_video[vid], key=lambda c: c[S.CHUNK_START])
        got_rgb = np.concatenate([c[S.FEATURES_2D] for c in parts])
        got_audio = np.concatenate([c[S.FEATURES_3D] for c in parts])
        np.testing.assert_allclose(got_rgb, youtube8m.dequantize(rgb), rtol=1e-6)
        np.testing.assert_allclose(got_audio, youtube8m.dequantize(audio), rtol=1e-6)
        assert float(parts[0][S.DURATION]) == len(rgb)
        assert list(parts[0][S.LABELS]) == labels
        assert int(parts[0][S.CATEGORY]) == (labels[0] if labels else -1)
    assert [t.decode() for t in by_video["aa11"][0][S.CAPTION]] == ["hello", "cut it"]


def test_a_truncated_feature_list_fails_that_video_naming_the_record(tmp_path):
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (10, 1024))
    audio = [row for row in rng.integers(0, 256, (10, 128))]
    audio[4] = audio[4][:100]  # one second's audio cut short
    with tf.io.TFRecordWriter(str(tmp_path / "bad.tfrecord")) as writer:
        writer.write(yt8m_example("bad1", [1], rgb, audio))
        writer.write(yt8m_example("good", [2], rgb, rng.integers(0, 256, (10, 128))))
    summary = youtube8m.convert_youtube8m(str(tmp_path / "bad.tfrecord"), tmp_path / "o/yt", 1)
    assert summary["counts"]["converted"] == 1
    assert "bad.tfrecord, record bad1: audio step 4 has 100 bytes" in summary["failed"]["bad1"]


def test_a_file_cut_inside_a_record_or_a_repeated_id_stops_indexing(yt8m_dir, tmp_path):
    folder, _ = yt8m_dir
    data = (folder / "train0.tfrecord").read_bytes()
    (tmp_path / "cut.tfrecord").write_bytes(data[:-10])
    with pytest.raises(ValueError, match=r"cut.tfrecord: file ends inside the record at byte"):
        youtube8m.index_records(str(tmp_path / "cut.tfrecord"))
    (tmp_path / "copy.tfrecord").write_bytes(data)
    with pytest.raises(ValueError, match="aa11 appears twice"):
        youtube8m.index_records(f"{folder / 'train0.tfrecord'},{tmp_path / 'copy.tfrecord'}")
