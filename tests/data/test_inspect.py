"""Tests for the record inspector (vtlearn.data.inspect) on the tiny lab."""

import collections
import io
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from vtlearn.data import inspect, lab, records
from vtlearn.data import schema as S
from vtlearn.data.text import Vocabulary, tokenize

TINY = lab.lab_config("tiny")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    # Same directory as test_lab.py's fixture: one generation per session.
    return lab.generate_lab(TINY, tmp_path_factory.getbasetemp() / "lab",
                            workers=1)


def _pattern(dataset, split="train"):
    return os.path.join(dataset.root, f"{split}-*.tfrecord")


def _captions_by_video(files):
    """{video id: caption strings} from records.read_chunks."""
    videos = {}
    for path in files:
        for chunk in records.read_chunks(path, frames=False):
            videos[chunk[S.VIDEO_ID]] = [t.decode() for t in chunk[S.CAPTION]]
    return videos


def test_stats_match_the_lab(tiny):
    stats = inspect.record_stats(_pattern(tiny), tiny.vocab_path)
    counts = tiny.metadata["splits"]["train"]
    for key in ("records", "videos", "frames", "captions", "relevant_captions",
                "segments"):
        assert stats[key] == counts[key], key
    assert stats["files"] == TINY.num_shards[0]
    assert stats["categories"] == TINY.num_categories
    assert stats["frame_sizes"] == [[TINY.height, TINY.width]]
    assert stats["frame_rates"] == [TINY.fps]
    assert stats["video_seconds"]["mean"] * stats["videos"] == pytest.approx(
        counts["seconds"], abs=0.01)
    assert stats["record_seconds"]["max"] <= TINY.chunk_seconds
    assert stats["audio"] == {"records": counts["records"],
                              "sample_rates": [float(TINY.sample_rate)],
                              "seconds": pytest.approx(counts["seconds"])}
    assert stats["features_2d"] == {"records": counts["records"],
                                    "dims": [TINY.features_2d]}
    assert stats["features_3d"]["dims"] == [TINY.features_3d]
    lo, hi = TINY.caption_seconds
    assert lo - 0.02 <= stats["caption_seconds"]["min"]
    assert stats["caption_seconds"]["max"] <= hi + 0.02
    videos = _captions_by_video(tiny.train_files)
    words = [len(tokenize(t)) for caps in videos.values() for t in caps]
    assert stats["caption_words"] == {"mean": round(np.mean(words), 3),
                                      "min": min(words), "max": max(words)}
    assert stats["oov_rate"] == 0.0


def test_oov_rate_against_a_smaller_vocabulary(tiny, tmp_path):
    words = [w for caps in _captions_by_video(tiny.train_files).values()
             for t in caps for w in tokenize(t)]
    common = [w for w, _ in collections.Counter(words).most_common(20)]
    Vocabulary(common).save(tmp_path / "small.txt")
    expected = sum(w not in common for w in words) / len(words)
    stats = inspect.record_stats(_pattern(tiny), str(tmp_path / "small.txt"))
    assert 0 < expected < 1
    assert stats["oov_rate"] == pytest.approx(expected)


def test_contact_sheet(tiny, tmp_path):
    out = tmp_path / "sheet.png"
    size = inspect.contact_sheet(_pattern(tiny, "val"), out, rows=3, cols=5)
    image = Image.open(out)
    assert image.format == "PNG" and image.size == size
    assert np.asarray(image.convert("RGB")).std() > 5  # not blank
    fig = inspect.contact_sheet_figure(_pattern(tiny, "val"), rows=3, cols=5)
    first = next(records.read_chunks(tiny.val_files[0]))
    start, rate = float(first[S.CHUNK_START]), float(first[S.FRAME_RATE])
    assert fig.axes[0].get_ylabel() == (f"{first[S.VIDEO_ID].decode()}\n"
                                        f"{start:.0f}-{float(first[S.CHUNK_END]):.0f} s")
    frame = np.asarray(Image.open(io.BytesIO(first[S.FRAMES][0])))
    np.testing.assert_array_equal(fig.axes[0].get_images()[0].get_array(), frame)
    captions = [(t.decode(), a, b) for t, a, b in zip(
        first[S.CAPTION], first[S.CAPTION_START], first[S.CAPTION_END])]
    picks = np.round(np.linspace(0, len(first[S.FRAMES]) - 1, 5)).astype(int)
    for c, i in enumerate(picks):
        time = start + i / rate
        said = [t for t, a, b in captions if a <= time < b]  # by hand, then wrapped
        expected = "·" if not said else said[-1][:24] + (
            "\n" + said[-1][24:48] if len(said[-1]) > 24 else "")
        assert fig.axes[c].get_xlabel() == f"{time:.1f} s\n{expected}"


def test_command_line(tiny, tmp_path, capsys):
    sheet = tmp_path / "cli.png"
    assert inspect.main([_pattern(tiny, "test"), "--vocab", tiny.vocab_path,
                         "--contact_sheet", str(sheet)]) == 0
    out = capsys.readouterr().out
    records_line = next(line for line in out.splitlines()
                        if line.startswith("records"))
    assert records_line.split()[1] == str(
        tiny.metadata["splits"]["test"]["records"])
    assert "oov_rate" in out and sheet.exists()


def _bad_files(tiny, tmp_path):
    """Files that are not readable vtlearn records, with what they are."""
    garbage = tmp_path / "garbage.tfrecord"
    garbage.write_bytes(b"this is not a tfrecord file at all" * 10)
    truncated = tmp_path / "truncated.tfrecord"
    data = open(tiny.train_files[0], "rb").read()
    truncated.write_bytes(data[:len(data) // 2])
    not_proto = tmp_path / "not_proto.tfrecord"
    records.write_tfrecord(not_proto, [b"\x0a\xff\xff\xff\x0f"])
    no_id = tmp_path / "no_id.tfrecord"
    records.write_tfrecord(no_id, [tf.train.SequenceExample().SerializeToString()])
    return {garbage: "corrupt", truncated: "corrupt", not_proto: "record 0",
            no_id: "video/id"}


def test_errors_name_the_file(tiny, tmp_path, capsys):
    for path, what in _bad_files(tiny, tmp_path).items():
        with pytest.raises(ValueError, match=what) as error:
            inspect.record_stats(str(path))
        assert str(path) in str(error.value)
        assert inspect.main([str(path)]) == 1
        assert str(path) in capsys.readouterr().err
    missing = str(tmp_path / "nothing-*.tfrecord")
    with pytest.raises(FileNotFoundError, match="nothing"):
        inspect.record_stats(missing)
    assert inspect.main([missing, "--contact_sheet", str(tmp_path / "x.png")]) == 1
    assert missing in capsys.readouterr().err
