"""`tfds.load("vtlearn_lab/tiny")` gives the lab's videos, as its records hold them."""

import numpy as np
import tensorflow_datasets as tfds

import vtlearn.data.lab_tfds  # noqa: F401  (registers "vtlearn_lab")
from vtlearn.data import lab, records
from vtlearn.data import schema as S


def test_tfds_load_gives_each_lab_video_whole(tmp_path):
    config = lab.lab_config("tiny")
    generated = lab.generate_lab(config, tmp_path / "lab")
    by_video = {}
    for path in generated.test_files:
        for chunk in records.read_chunks(path):
            by_video.setdefault(chunk[S.VIDEO_ID].decode(), []).append(chunk)

    ds = tfds.load("vtlearn_lab/tiny", split="test", data_dir=str(tmp_path / "tfds"),
                   decoders={"frames": tfds.decode.SkipDecoding()})
    examples = list(tfds.as_numpy(ds))
    assert sorted(e["video_id"].decode() for e in examples) == sorted(by_video)
    for ex in examples:
        video_id = ex["video_id"].decode()
        chunks = by_video[video_id]
        # The frames are the records' JPEG bytes, in order.
        assert list(ex["frames"]) == [f for c in chunks for f in c[S.FRAMES]]
        video = lab.make_video(config, "test", int(video_id.rsplit("-", 1)[1]))
        np.testing.assert_allclose(ex["duration"], video.duration, rtol=1e-6)
        assert ex["category"] == video.category == chunks[0][S.CATEGORY]
        assert ex["category_name"].decode() == video.category_name
        assert [t.decode() for t in ex["captions"]["text"]] == list(video.captions.text)
        assert [t.decode() for t in ex["captions"]["clean"]] == list(video.captions.clean)
        np.testing.assert_array_equal(ex["captions"]["step"], video.captions.step)
        np.testing.assert_allclose(ex["captions"]["start"], video.captions.start, rtol=1e-6)
        np.testing.assert_array_equal(ex["segments"]["label"], video.segments.label)
        np.testing.assert_allclose(ex["segments"]["end"], video.segments.end, rtol=1e-6)
        np.testing.assert_array_equal(ex["features_2d"], video.features_2d.astype(np.float32))
        np.testing.assert_array_equal(ex["features_3d"], video.features_3d.astype(np.float32))
        np.testing.assert_array_equal(ex["waveform"], video.waveform.astype(np.float32))
        assert ex["sample_rate"] == config.sample_rate and ex["frame_rate"] == config.fps

    # Decoded, the frames are uint8 [F, H, W, 3].
    (decoded,) = tfds.as_numpy(tfds.load("vtlearn_lab/tiny", split="test[:1]",
                                         data_dir=str(tmp_path / "tfds")))
    assert decoded["frames"].dtype == np.uint8
    assert decoded["frames"].shape[1:] == (config.height, config.width, 3)
