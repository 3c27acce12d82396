"""Inspects vtlearn record files: statistics and a contact sheet of frames.

Works on any file in the `schema` layout (lab or converted real data): it
reads records as raw `tf.train.SequenceExample`s, so it needs no feature
dimensions up front.

  python -m vtlearn.data.inspect "DIR/train-*.tfrecord" [--vocab vocab.txt]
      [--contact_sheet sheet.png] [--rows 4] [--cols 8]

`record_stats` returns the statistics as a dict; the command prints it. A
corrupt file, a record that is not a vtlearn chunk, or a pattern matching no
file is an error naming the file or pattern (exit status 1).
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from google.protobuf.message import DecodeError
from PIL import Image

from vtlearn import cli
from vtlearn.data import records
from vtlearn.data import schema as S
from vtlearn.data.text import Vocabulary, tokenize


def match_files(pattern: str) -> list[str]:
    """Sorted files matching a glob pattern; FileNotFoundError if none."""
    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no record files match {pattern!r}")
    return files


def iter_records(path: str) -> Iterator[tf.train.SequenceExample]:
    """Yields the records of one file as protos, with errors that name the file.

    Raises:
      ValueError: the file is corrupt or truncated, or a record is not a
        `SequenceExample` with the required context keys.
    """
    for index, raw in enumerate(records.read_serialized(path)):
        try:
            example = tf.train.SequenceExample.FromString(raw.numpy())
        except DecodeError as e:
            raise ValueError(f"{path}: record {index} is not a "
                             "tf.train.SequenceExample") from e
        missing = [k for k in S.REQUIRED_CONTEXT
                   if k not in example.context.feature]
        if missing:
            raise ValueError(f"{path}: record {index} is not a vtlearn chunk: "
                             f"it lacks {', '.join(missing)}")
        yield example


def _values(example: tf.train.SequenceExample, key: str) -> list:
    """The values of a context feature, [] when absent."""
    feature = example.context.feature.get(key)
    if feature is None:
        return []
    kind = feature.WhichOneof("kind")
    return list(getattr(feature, kind).value) if kind else []


def _one(example: tf.train.SequenceExample, key: str, default=None):
    values = _values(example, key)
    return values[0] if values else default


def _summary(values: Sequence[float]) -> dict[str, float | None]:
    """mean/min/max of values (None for an empty list)."""
    if not len(values):
        return {"mean": None, "min": None, "max": None}
    array = np.asarray(values, np.float64)
    return {"mean": round(float(array.mean()), 3), "min": float(array.min()),
            "max": float(array.max())}


def record_stats(pattern: str, vocab_path: str | None = None) -> dict[str, Any]:
    """Statistics of the records matching `pattern`.

    Captions and segments are counted once per video (every chunk of a video
    repeats them).

    Args:
      pattern: a glob pattern of TFRecord files.
      vocab_path: optional `Vocabulary` file for the OOV rate.

    Returns:
      files, records, videos, categories, frames, frame_sizes ([[H, W], ...]),
      frame_rates, video_seconds and record_seconds (summaries), captions,
      relevant_captions (None without `caption/step`), captions_per_video,
      caption_words, caption_seconds (summaries), segments,
      segments_per_video, audio ({records, sample_rates, seconds}),
      features_2d and features_3d ({records, dims}), oov_rate (with a
      vocabulary: the fraction of caption words outside it). A summary is
      {mean, min, max}.
    """
    files = match_files(pattern)
    n_records, n_frames = 0, 0
    record_seconds, frame_sizes, frame_rates = [], set(), set()
    audio = {"records": 0, "sample_rates": set(), "seconds": 0.0}
    features = {k: {"records": 0, "dims": set()}
                for k in (S.FEATURES_2D, S.FEATURES_3D)}
    videos: dict[str, dict[str, Any]] = {}
    for path in files:
        for example in iter_records(path):
            n_records += 1
            start, end = _one(example, S.CHUNK_START), _one(example, S.CHUNK_END)
            record_seconds.append(end - start)
            lists = example.feature_lists.feature_list
            frames = lists[S.FRAMES].feature if S.FRAMES in lists else []
            n_frames += len(frames)
            if frames:
                frame_rates.add(_one(example, S.FRAME_RATE, 0.0))
                frame_sizes.add(_frame_size(example, frames[0]))
            if S.WAVEFORM in lists and lists[S.WAVEFORM].feature:
                rate = _one(example, S.SAMPLE_RATE, 0.0)
                audio["records"] += 1
                audio["sample_rates"].add(rate)
                samples = len(lists[S.WAVEFORM].feature[0].float_list.value)
                audio["seconds"] += samples / rate if rate else 0.0
            for key, stats in features.items():
                if key in lists and lists[key].feature:
                    stats["records"] += 1
                    stats["dims"].add(len(lists[key].feature[0].float_list.value))
            video_id = _one(example, S.VIDEO_ID).decode("utf-8", "replace")
            if video_id not in videos:
                videos[video_id] = _video_info(example)

    captions = [c for v in videos.values() for c in v["captions"]]
    steps = [s for v in videos.values() for s in v["steps"]]
    words = [w for text, _, _ in captions for w in tokenize(text)]
    stats = {
        "files": len(files),
        "records": n_records,
        "videos": len(videos),
        "categories": len({v["category"] for v in videos.values()} - {-1}),
        "frames": n_frames,
        "frame_sizes": sorted(list(s) for s in frame_sizes),
        "frame_rates": sorted(frame_rates),
        "video_seconds": _summary([v["duration"] for v in videos.values()]),
        "record_seconds": _summary(record_seconds),
        "captions": len(captions),
        "relevant_captions": (sum(s >= 0 for s in steps)
                              if len(steps) == len(captions) and steps else None),
        "captions_per_video": _summary([len(v["captions"])
                                        for v in videos.values()]),
        "caption_words": _summary([len(tokenize(t)) for t, _, _ in captions]),
        "caption_seconds": _summary([e - s for _, s, e in captions]),
        "segments": sum(v["segments"] for v in videos.values()),
        "segments_per_video": _summary([v["segments"] for v in videos.values()]),
        "audio": {"records": audio["records"],
                  "sample_rates": sorted(audio["sample_rates"]),
                  "seconds": round(audio["seconds"], 3)},
        "features_2d": {"records": features[S.FEATURES_2D]["records"],
                        "dims": sorted(features[S.FEATURES_2D]["dims"])},
        "features_3d": {"records": features[S.FEATURES_3D]["records"],
                        "dims": sorted(features[S.FEATURES_3D]["dims"])},
    }
    if vocab_path:
        vocab = Vocabulary.load(vocab_path)
        stats["oov_rate"] = (sum(w not in vocab for w in words) / len(words)
                             if words else 0.0)
    return stats


def video_captions(pattern: str) -> dict[str, list[str]]:
    """{video id: its caption texts} of the records matching `pattern` (every
    chunk of a video repeats its captions; each video is counted once)."""
    captions: dict[str, list[str]] = {}
    for path in match_files(pattern):
        for example in iter_records(path):
            video_id = _one(example, S.VIDEO_ID).decode("utf-8", "replace")
            if video_id not in captions:
                captions[video_id] = [t.decode("utf-8", "replace")
                                      for t in _values(example, S.CAPTION)]
    return captions


def _frame_size(example: tf.train.SequenceExample,
                first: tf.train.Feature) -> tuple[int, int]:
    """(H, W) from the context, else by decoding the first frame."""
    height, width = _one(example, S.HEIGHT), _one(example, S.WIDTH)
    if height and width:
        return int(height), int(width)
    image = Image.open(io.BytesIO(first.bytes_list.value[0]))
    return image.height, image.width


def _video_info(example: tf.train.SequenceExample) -> dict[str, Any]:
    """Video-level fields, read from any one of its chunks."""
    texts = [t.decode("utf-8", "replace") for t in _values(example, S.CAPTION)]
    return {
        "duration": _one(example, S.DURATION),
        "category": _one(example, S.CATEGORY, -1),
        "captions": list(zip(texts, _values(example, S.CAPTION_START),
                             _values(example, S.CAPTION_END))),
        "steps": _values(example, S.CAPTION_STEP),
        "segments": len(_values(example, S.SEGMENT_LABEL)),
    }


def contact_sheet(pattern: str, out_path: str | Path, rows: int = 4,
                  cols: int = 8) -> tuple[int, int]:
    """Saves `contact_sheet_figure(pattern, rows, cols)` as a PNG; returns its
    (width, height) in pixels."""
    from vtlearn.evaluation.figures import pyplot

    fig = contact_sheet_figure(pattern, rows, cols)
    fig.savefig(out_path, format="png")
    pyplot().close(fig)
    return fig.canvas.get_width_height()


def contact_sheet_figure(pattern: str, rows: int = 4, cols: int = 8):
    """A matplotlib figure of the first `rows` records with frames, `cols` frames each.

    Each row is one record, labelled with its video id and chunk times;
    frames are evenly spaced over the record, each with its time in the
    video and the caption narrated then (the last one that started before
    it and has not ended; "·" for none) under it.
    """
    from vtlearn.evaluation.figures import pyplot

    shown = []
    for path in match_files(pattern):
        for example in iter_records(path):
            lists = example.feature_lists.feature_list
            frames = lists[S.FRAMES].feature if S.FRAMES in lists else []
            if not frames:
                continue
            start = _one(example, S.CHUNK_START, 0.0)
            rate = _one(example, S.FRAME_RATE, 0.0) or 1.0
            picks = np.round(np.linspace(0, len(frames) - 1, min(cols, len(frames)))).astype(int)
            shown.append(dict(
                video=_one(example, S.VIDEO_ID).decode("utf-8", "replace"), start=start,
                end=_one(example, S.CHUNK_END, 0.0), captions=_video_info(example)["captions"],
                tiles=[(start + i / rate, Image.open(io.BytesIO(
                    frames[i].bytes_list.value[0])).convert("RGB")) for i in picks]))
            if len(shown) == rows:
                break
        if len(shown) == rows:
            break
    if not shown:
        raise ValueError(f"no frames in the records matching {pattern!r}")
    plt = pyplot()
    fig, axes = plt.subplots(len(shown), cols, figsize=(1.7 * cols + 0.6, 2.0 * len(shown)),
                             dpi=100, squeeze=False)
    for row, record in zip(axes, shown):
        for c, ax in enumerate(row):
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(record["tiles"]):
                ax.axis("off")
                continue
            time, image = record["tiles"][c]
            ax.imshow(image)
            ax.set_xlabel(f"{time:.1f} s\n{_narrated(record['captions'], time)}", fontsize=6)
        row[0].set_ylabel(f"{record['video'][:18]}\n{record['start']:.0f}-{record['end']:.0f} s",
                          fontsize=7)
    fig.suptitle(f"{pattern}: {len(shown)} records", fontsize=9)
    fig.tight_layout()
    return fig


def _narrated(captions: Sequence[tuple[str, float, float]], time: float, width: int = 24) -> str:
    """The caption narrated at `time`, wrapped to two lines of `width` characters."""
    current = [text for text, start, end in captions if start <= time < end]
    if not current:
        return "·"
    text = current[-1]
    return text[:width] + ("\n" + text[width:2 * width] if len(text) > width else "")


def _format(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {_format(v)}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _parser() -> argparse.ArgumentParser:
    parser = cli.argument_parser(
        prog="python -m vtlearn.data.inspect",
        description="Statistics and a contact sheet of vtlearn record files.")
    parser.add_argument("pattern", help="glob pattern of TFRecord files")
    parser.add_argument("--vocab", help="vocabulary file, for the OOV rate")
    parser.add_argument("--contact_sheet", help="PNG to write")
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--cols", type=int, default=8)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Prints the statistics (and writes a contact sheet); 1 on error."""
    return _run(_parser().parse_args(argv))


def _run(args: argparse.Namespace) -> int:
    try:
        stats = record_stats(args.pattern, args.vocab)
        for key, value in stats.items():
            print(f"{key:20s} {_format(value)}")
        if args.contact_sheet:
            width, height = contact_sheet(args.pattern, args.contact_sheet, args.rows,
                                          args.cols)
            print(f"{'contact_sheet':20s} {args.contact_sheet} "
                  f"({width}x{height})")
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    cli.run(_parser().parse_args, _run)
