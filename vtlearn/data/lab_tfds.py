"""The lab as a TensorFlow Datasets dataset, one example per whole video.

    import tensorflow_datasets as tfds
    import vtlearn.data.lab_tfds  # registers "vtlearn_lab"

    ds = tfds.load("vtlearn_lab/tiny", split="train")  # or "vtlearn_lab/local"

Configs are the lab presets (`lab.PRESETS`) with their default settings; the
version is the lab's `LAB_VERSION`. `download_and_prepare` renders the videos
with `lab.make_video` (nothing is downloaded), so an example holds what the
lab's records hold, uncut: the frames are the records' JPEG bytes (decoded
to uint8 unless `decoders={"frames": tfds.decode.SkipDecoding()}`).

Features (F frames, S samples, N feature steps, C captions, K steps):

| key           | dtype   | shape                          |
|---------------|---------|--------------------------------|
| video_id      | string  | []                             |
| duration      | float32 | [] seconds                     |
| category      | int64   | [] task index                  |
| category_name | string  | []                             |
| frames        | uint8   | [F, H, W, 3] at `frame_rate`   |
| frame_rate    | float32 | []                             |
| waveform      | float32 | [S] mono at `sample_rate`      |
| sample_rate   | float32 | []                             |
| features_2d   | float32 | [N, D2] at `feature_rate`      |
| features_3d   | float32 | [N, D3]                        |
| feature_rate  | float32 | []                             |
| captions      | dict    | [C] each: text, clean (string), start, end |
|               |         | (float32), step (int32: into segments, -1 chatter) |
| segments      | dict    | [K] each: label (int64), start, end (float32) |

Training reads the lab's chunk records instead (`lab.generate_lab`).
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from vtlearn.data import lab, records


class VtlearnLab(tfds.core.GeneratorBasedBuilder):
    """The narrated-video lab (`vtlearn.data.lab`): videos with known answers."""

    VERSION = tfds.core.Version(f"{lab.LAB_VERSION}.0.0")
    BUILDER_CONFIGS = [
        tfds.core.BuilderConfig(name=preset, description=f'lab_config("{preset}")')
        for preset in lab.PRESETS]

    @property
    def lab_config(self) -> lab.LabConfig:
        return lab.lab_config(self.builder_config.name)

    def _info(self) -> tfds.core.DatasetInfo:
        c = self.lab_config
        f32 = np.float32
        return self.dataset_info_from_configs(
            description=__doc__.split("\n\n")[0],
            features=tfds.features.FeaturesDict({
                "video_id": tfds.features.Text(),
                "duration": tfds.features.Scalar(f32),
                "category": tfds.features.Scalar(np.int64),
                "category_name": tfds.features.Text(),
                "frames": tfds.features.Video((None, c.height, c.width, 3),
                                              encoding_format="jpeg"),
                "frame_rate": tfds.features.Scalar(f32),
                "waveform": tfds.features.Tensor(shape=(None,), dtype=f32),
                "sample_rate": tfds.features.Scalar(f32),
                "features_2d": tfds.features.Tensor(shape=(None, c.features_2d), dtype=f32),
                "features_3d": tfds.features.Tensor(shape=(None, c.features_3d), dtype=f32),
                "feature_rate": tfds.features.Scalar(f32),
                "captions": tfds.features.Sequence({
                    "text": tfds.features.Text(), "clean": tfds.features.Text(),
                    "start": f32, "end": f32, "step": np.int32}),
                "segments": tfds.features.Sequence({
                    "label": np.int64, "start": f32, "end": f32}),
            }),
            supervised_keys=None,
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # rendered, not downloaded
        return {split: self._generate_examples(split) for split in lab.SPLITS}

    def _generate_examples(self, split: str):
        c = self.lab_config
        for index in range(c.num_videos[lab.SPLITS.index(split)]):
            video = lab.make_video(c, split, index)
            caps, segs = video.captions, video.segments
            yield video.video_id, {
                "video_id": video.video_id,
                "duration": video.duration,
                "category": video.category,
                "category_name": video.category_name,
                "frames": [records.encode_jpeg(frame, c.jpeg_quality) for frame in video.frames],
                "frame_rate": video.frame_rate,
                "waveform": (np.zeros(0, np.float32) if video.waveform is None
                             else video.waveform.astype(np.float32)),
                "sample_rate": video.sample_rate,
                "features_2d": video.features_2d.astype(np.float32),
                "features_3d": video.features_3d.astype(np.float32),
                "feature_rate": video.feature_rate,
                "captions": {"text": list(caps.text), "clean": list(caps.clean),
                             "start": caps.start, "end": caps.end,
                             "step": np.asarray(caps.step, np.int32)},
                "segments": {"label": segs.label, "start": segs.start, "end": segs.end},
            }
