"""The lab's videos written as the downstream benchmarks' own files.

So that every benchmark evaluator (`vtlearn.evaluation.youcook2`, `msrvtt`,
`crosstask`, `action_recognition`, `coin`, `mining_youtube`,
`youtube8m_segments`) runs end to end without a download, this writes one lab
split (default "test") in each benchmark's layout: video files
(MPEG-4 Part 2, the lab's frames and frame rate) and, when the lab has
features, `features/<video_id>.npz` with arrays "2d" and "3d" (one vector per
second) and, when it has audio, `waveforms/<video_id>.npy` (mono, the lab's
rate) for feature-tower runs. Texts are the lab's canonical step names
("red circle moves left"), in the run's vocabulary.

  youcook2   validation/<category>/<video>.mp4, validation_youcook.csv
             (end,start,task,text,video_id) and youcookii_annotations_trainval.json
             (subset "validation"): one clip per step segment.
  msrvtt     videos/<video>_<k>.mp4, one per step segment, and
             MSRVTT_JSFUSION_test.csv (key,vid_key,video_id,sentence).
  crosstask  the crosstask_release/ tree: tasks_primary.txt (a task per
             category: its typical steps), videos.csv, videos_val.csv,
             annotations/<task>_<video>.csv (step,start,end), videos/<video>.mp4.
  hmdb51     videos/<action>/<video>_<k>.avi, one per step segment, classed by
             the step's action, and testTrainMulti_7030_splits/
             <action>_test_split{1,2,3}.txt (every third clip of a class tests,
             a different third per split).
  ucf101     the same clips as UCF101's ucfTrainTestlist/ (classInd.txt,
             trainlist0N.txt, testlist0N.txt).
  coin       videos/<video>.mp4 and COIN.json: the split as subset "testing",
             the lab's "val" split as "training"; step ids are the lab's.
  miningyoutube  videos_test.txt, transcripts/<video>.txt (the video's steps and
             background runs in order, as MiningYouTube's underscore-joined class
             names), groundTruth/<video>.gt (one label per second, at its centre),
             videos/<video>.mp4.
  youtube8m  validate0000.tfrecord in YouTube-8M's frame-level format (the lab's
             features quantised as `rgb` / `audio`, at the lab's sizes) with
             segment ratings: every 5-s segment of a video rated for each step
             class the video shows (1 where the step holds the segment's
             centre); vocabulary.csv names the classes (step ids).

Command line (lab flags as for `python -m vtlearn.data.lab`):

  python -m vtlearn.data.lab_exports --format crosstask --preset local \\
      --out_dir /tmp/lab_crosstask [--split test] [--seed 1 ...]
"""

from __future__ import annotations

import argparse
import csv
import fractions
import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from vtlearn import cli
from vtlearn.data import lab
from vtlearn.data import schema as S

FORMATS = ("youcook2", "msrvtt", "crosstask", "hmdb51", "ucf101", "coin", "miningyoutube",
           "youtube8m")
SEGMENT_SECONDS = 5
TASK_ID_OFFSET = 100  # CrossTask task ids are numbers; category c is task 100 + c


def write_video(path: str | Path, frames: np.ndarray, fps: float) -> None:
    """Encodes uint8 [F, H, W, 3] frames (even H, W) as MPEG-4 Part 2 at `fps`."""
    from vtlearn.data.convert import pyav

    av = pyav()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = fractions.Fraction(fps).limit_denominator(1000)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=rate)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = 4_000_000
        stream.codec_context.time_base = 1 / rate
        for i, pixels in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


class _Writer:
    """Writes one lab split's videos, clips and features into `out`."""

    def __init__(self, config: lab.LabConfig, split: str, out: Path):
        self.config, self.split, self.out = config, split, out
        self.world = lab.build_world(config)
        count = config.num_videos[lab.SPLITS.index(split)]
        if not count:
            raise ValueError(f"the lab's {split} split has no video")
        self.videos = [lab.make_video(config, split, i) for i in range(count)]

    def step_name(self, label: int) -> str:
        return self.world.steps[int(label)].name

    def save(self, video: S.Video, path: Path, start: float = 0.0,
             end: float | None = None) -> str:
        """Writes [start, end) of `video` to `path`, its features and waveform beside;
        returns its id (the file's stem)."""
        end = video.duration if end is None else end
        video_id = path.stem
        if video.frames is not None:
            fps = video.frame_rate
            write_video(path, video.frames[round(start * fps):max(round(end * fps),
                                                                  round(start * fps) + 1)], fps)
        streams = {name: feats[int(math.floor(start)):max(int(math.ceil(end)),
                                                          int(math.floor(start)) + 1)]
                   for name, feats in (("2d", video.features_2d), ("3d", video.features_3d))
                   if feats is not None}
        if streams:
            (self.out / "features").mkdir(parents=True, exist_ok=True)
            np.savez(self.out / "features" / f"{video_id}.npz", **streams)
        if video.waveform is not None:
            rate = video.sample_rate
            (self.out / "waveforms").mkdir(parents=True, exist_ok=True)
            np.save(self.out / "waveforms" / f"{video_id}.npy",
                    video.waveform[round(start * rate):round(end * rate)])
        return video_id

    def segments(self):
        """(video, k, label, start, end) of every step segment of the split."""
        for video in self.videos:
            seg = video.segments
            for k, (label, start, end) in enumerate(zip(seg.label, seg.start, seg.end)):
                yield video, k, int(label), float(start), float(end)


def _youcook2(w: _Writer) -> None:
    rows, database = [], {}
    for video in w.videos:
        folder = w.out / "validation" / str(video.category)
        w.save(video, folder / f"{video.video_id}.mp4")
        notes = []
        for i, (label, start, end) in enumerate(zip(video.segments.label, video.segments.start,
                                                    video.segments.end)):
            text = w.step_name(label)
            rows.append(dict(end=round(float(end), 2), start=round(float(start), 2),
                             task=video.category, text=text, video_id=video.video_id))
            notes.append(dict(segment=[round(float(start), 2), round(float(end), 2)],
                              sentence=text, id=i))
        database[video.video_id] = dict(subset="validation", recipe_type=str(video.category),
                                        duration=video.duration, annotations=notes)
    _write_csv(w.out / "validation_youcook.csv", ("end", "start", "task", "text", "video_id"),
               rows)
    (w.out / "youcookii_annotations_trainval.json").write_text(
        json.dumps({"database": database}, indent=1))


def _msrvtt(w: _Writer) -> None:
    rows = []
    for video, k, label, start, end in w.segments():
        vid = w.save(video, w.out / "videos" / f"{video.video_id}_{k}.mp4", start, end)
        rows.append(dict(key=f"ret{len(rows)}", vid_key=f"msr{len(rows)}", video_id=vid,
                         sentence=w.step_name(label)))
    _write_csv(w.out / "MSRVTT_JSFUSION_test.csv", ("key", "vid_key", "video_id", "sentence"),
               rows)


def _crosstask(w: _Writer) -> None:
    root = w.out / "crosstask_release"
    blocks, lines = [], []
    for c, steps in enumerate(w.world.categories):
        names = ",".join(w.step_name(s) for s in steps)
        blocks.append(f"{TASK_ID_OFFSET + c}\n{w.world.category_names[c]}\n"
                      f"https://example.org/lab/{c}\n{len(steps)}\n{names}\n\n")
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "tasks_primary.txt").write_text("".join(blocks))
    for video in w.videos:
        task = TASK_ID_OFFSET + video.category
        typical = list(w.world.categories[video.category])
        w.save(video, root / "videos" / f"{video.video_id}.mp4")
        lines.append(f"{task},{video.video_id},https://example.org/lab/{video.video_id}\n")
        seg = video.segments
        (root / "annotations" / f"{task}_{video.video_id}.csv").write_text("".join(
            f"{typical.index(int(label)) + 1},{start:.2f},{end:.2f}\n"
            for label, start, end in zip(seg.label, seg.start, seg.end)))
    (root / "videos.csv").write_text("".join(lines))
    (root / "videos_val.csv").write_text("".join(lines))


def _action_clips(w: _Writer, folder: str, extension: str) -> dict[str, list[str]]:
    """Writes one clip per step segment under `folder/<action>/`; class -> clip ids."""
    classes: dict[str, list[str]] = {a: [] for a in lab.ACTIONS}
    for video, k, label, start, end in w.segments():
        action = lab.ACTIONS[w.world.steps[label].action]
        vid = w.save(video, w.out / folder / action / f"{video.video_id}_{k}{extension}",
                     start, end)
        classes[action].append(vid)
    return {a: ids for a, ids in classes.items() if ids}


def _test_in_split(i: int, split: int) -> bool:
    """Every third clip of a class tests, a different third per split (1-3)."""
    return i % 3 == split - 1


def _hmdb51(w: _Writer) -> None:
    folder = w.out / "testTrainMulti_7030_splits"
    folder.mkdir(parents=True, exist_ok=True)
    for action, ids in _action_clips(w, "videos", ".avi").items():
        for split in (1, 2, 3):
            (folder / f"{action}_test_split{split}.txt").write_text("".join(
                f"{vid}.avi {2 if _test_in_split(i, split) else 1}\n"
                for i, vid in enumerate(ids)))


def _ucf101(w: _Writer) -> None:
    folder = w.out / "ucfTrainTestlist"
    folder.mkdir(parents=True, exist_ok=True)
    classes = _action_clips(w, "UCF-101", ".avi")
    (folder / "classInd.txt").write_text("".join(
        f"{i + 1} {action}\n" for i, action in enumerate(classes)))
    for split in (1, 2, 3):
        train, test = [], []
        for index, (action, ids) in enumerate(classes.items()):
            for i, vid in enumerate(ids):
                name = f"{action}/{vid}.avi"
                (test.append(name) if _test_in_split(i, split)
                 else train.append(f"{name} {index + 1}"))
        (folder / f"trainlist0{split}.txt").write_text("".join(f"{t}\n" for t in train))
        (folder / f"testlist0{split}.txt").write_text("".join(f"{t}\n" for t in test))


def _coin(w: _Writer) -> None:
    if w.split == "val":
        raise ValueError("the COIN export trains on the lab's val split: export another split")
    database = {}
    for subset, writer in (("training", _Writer(w.config, "val", w.out)), ("testing", w)):
        for video in writer.videos:
            writer.save(video, w.out / "videos" / f"{video.video_id}.mp4")
            seg = video.segments
            database[video.video_id] = {
                "subset": subset, "recipe_type": video.category, "class": video.category_name,
                "duration": video.duration,
                "annotation": [{"id": str(int(label)), "segment": [round(float(s), 2),
                                                                     round(float(e), 2)],
                                "label": w.step_name(label)}
                               for label, s, e in zip(seg.label, seg.start, seg.end)]}
    (w.out / "COIN.json").write_text(json.dumps({"database": database}, indent=1))


def _miningyoutube(w: _Writer) -> None:
    for folder in ("transcripts", "groundTruth"):
        (w.out / folder).mkdir(parents=True, exist_ok=True)
    for video in w.videos:
        w.save(video, w.out / "videos" / f"{video.video_id}.mp4")
        seg = video.segments
        labels = []
        for t in range(math.ceil(video.duration - 1e-6)):
            inside = np.flatnonzero((seg.start <= t + 0.5) & (t + 0.5 < seg.end))
            labels.append(w.step_name(seg.label[inside[0]]).replace(" ", "_") if len(inside)
                          else "background")
        transcript = [label for i, label in enumerate(labels) if i == 0 or labels[i - 1] != label]
        (w.out / "transcripts" / f"{video.video_id}.txt").write_text(" ".join(transcript) + "\n")
        (w.out / "groundTruth" / f"{video.video_id}.gt").write_text("\n".join(labels) + "\n")
    (w.out / "videos_test.txt").write_text("".join(f"{v.video_id}\n" for v in w.videos))


def _quantise(features: np.ndarray) -> list[bytes]:
    """Per step, uint8 bytes that `youtube8m.dequantize` maps back within half a step."""
    from vtlearn.data.youtube8m import QUANTIZED_MAX, QUANTIZED_MIN

    scale = (QUANTIZED_MAX - QUANTIZED_MIN) / 255.0
    q = np.clip(np.floor((features - QUANTIZED_MIN) / scale), 0, 255).astype(np.uint8)
    return [row.tobytes() for row in q]


def _youtube8m(w: _Writer) -> None:
    import tensorflow as tf

    if w.config.features_2d == 0 or w.config.features_3d == 0:
        raise ValueError("the YouTube-8M export needs the lab's features (features_2d, "
                         "features_3d > 0)")
    examples = []
    for video in w.videos:
        seg = video.segments
        classes = sorted({int(c) for c in seg.label})
        starts = np.arange(0, int(video.duration) - SEGMENT_SECONDS + 1, SEGMENT_SECONDS)
        labels, times, scores = [], [], []
        for c in classes:
            for t in starts:
                centre = t + SEGMENT_SECONDS / 2
                shown = np.any((seg.label == c) & (seg.start <= centre) & (centre < seg.end))
                labels.append(c), times.append(int(t)), scores.append(float(shown))
        context = {
            "id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[video.video_id.encode()])),
            "labels": tf.train.Feature(int64_list=tf.train.Int64List(value=classes)),
            "segment_labels": tf.train.Feature(int64_list=tf.train.Int64List(value=labels)),
            "segment_start_times": tf.train.Feature(int64_list=tf.train.Int64List(value=times)),
            "segment_scores": tf.train.Feature(float_list=tf.train.FloatList(value=scores))}
        lists = {name: tf.train.FeatureList(feature=[
            tf.train.Feature(bytes_list=tf.train.BytesList(value=[b])) for b in _quantise(f)])
            for name, f in (("rgb", video.features_2d), ("audio", video.features_3d))}
        examples.append(tf.train.SequenceExample(
            context=tf.train.Features(feature=context),
            feature_lists=tf.train.FeatureLists(feature_list=lists)).SerializeToString())
    with tf.io.TFRecordWriter(str(w.out / "validate0000.tfrecord")) as writer:
        for example in examples:
            writer.write(example)
    _write_csv(w.out / "vocabulary.csv", ("Index", "Name"),
               [dict(Index=i, Name=step.name) for i, step in enumerate(w.world.steps)])


_EXPORTS: dict[str, Callable[[_Writer], None]] = {
    "youcook2": _youcook2, "msrvtt": _msrvtt, "crosstask": _crosstask,
    "hmdb51": _hmdb51, "ucf101": _ucf101, "coin": _coin, "miningyoutube": _miningyoutube,
    "youtube8m": _youtube8m}


def export(config: lab.LabConfig, fmt: str, out_dir: str | Path,
           split: str = "test") -> Path:
    """Writes `split` of the lab `config` in benchmark format `fmt` into `out_dir`.

    Returns:
      The benchmark's `data_dir` (for CrossTask, `out_dir/crosstask_release`).
    """
    if fmt not in _EXPORTS:
        raise ValueError(f"unknown format {fmt!r}; choose from {FORMATS}")
    if split not in lab.SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {lab.SPLITS}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _EXPORTS[fmt](_Writer(config, split, out))
    return out / "crosstask_release" if fmt == "crosstask" else out


def _write_csv(path: Path, columns: tuple[str, ...], rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(rows)


def _parse(argv: list[str] | None) -> tuple[argparse.Namespace, lab.LabConfig]:
    parser = cli.argument_parser(
        prog="python -m vtlearn.data.lab_exports",
        description="Write a lab split as a downstream benchmark's files.")
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("--out_dir", required=True)
    parser.add_argument("--split", default="test", choices=lab.SPLITS)
    lab.add_config_flags(parser)
    args = parser.parse_args(argv)
    return args, lab.config_from_flags(parser, args)


def main(argv: list[str] | None = None) -> int:
    """Writes the export and prints where."""
    return _run(_parse(argv))


def _run(parsed: tuple[argparse.Namespace, lab.LabConfig]) -> int:
    args, config = parsed
    data_dir = export(config, args.format, args.out_dir, args.split)
    print(f"{args.format} ({args.split} split of the lab) written to {data_dir}")
    return 0


if __name__ == "__main__":
    cli.run(_parse, _run)
