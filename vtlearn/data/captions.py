"""Readers for the caption and annotation files of narrated-video data sets.

Formats (every reader validates its input and raises `AnnotationError`, a
`ValueError` naming the file and the video id or line of the problem):

* HowTo100M caption JSON (the released `raw_caption.json`)::

      {"<video_id>": {"start": [s, ...], "end": [s, ...], "text": [str, ...]}, ...}

* Per-video caption CSV `<video_id>.csv` (the released per-video caption
  files): a header row `start,end,text`, then one caption per row; text may
  contain commas when quoted (read with the `csv` module). A directory of these
  files is one caption source.
* Ground-truth steps CSV for evaluation sets: a header row
  `video_id,label,start,end` (integer labels), one step per row.
* Durations CSV: a header row `video_id,duration`.

Times are seconds in video time; they must be finite and non-negative, with
`end >= start`. Extra CSV columns are ignored. Captions come back sorted by
start time (`schema.Captions` sorts them).
"""

from __future__ import annotations

import collections
import csv
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from vtlearn import fs
from vtlearn.data import schema


class AnnotationError(ValueError):
    """A caption or annotation file is malformed."""


def read_captions(path: str | Path) -> dict[str, schema.Captions]:
    """Reads a caption JSON file, a directory of per-video CSVs, or one CSV.

    Args:
        path: `*.json` (HowTo100M format), a directory of `<video_id>.csv`
            files, or a single `<video_id>.csv`.

    Returns:
        Captions per video id.
    """
    path = os.fspath(path)
    if fs.isdir(path):
        return read_caption_csv_dir(path)
    if path.endswith(".csv"):
        return {fs.name(path)[:-len(".csv")]: read_caption_csv(path)}
    return read_caption_json(path)


def read_caption_json(path: str | Path) -> dict[str, schema.Captions]:
    """Reads the HowTo100M caption JSON `{video_id: {start, end, text}}`.

    The whole file is loaded at once (the released HowTo100M file takes a few
    GB of memory).
    """
    try:
        with fs.open(path) as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise AnnotationError(f"{path}: not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise AnnotationError(f"{path}: expected an object mapping video ids to "
                              f"captions, got {type(data).__name__}")
    return {video_id: _json_entry(path, video_id, entry)
            for video_id, entry in data.items()}


def _json_entry(path, video_id: str, entry) -> schema.Captions:
    where = f"{path}: video {video_id!r}"
    if not isinstance(entry, dict):
        raise AnnotationError(f"{where}: expected an object with start, end and "
                              f"text, got {type(entry).__name__}")
    for key in ("start", "end", "text"):
        if key not in entry:
            raise AnnotationError(f"{where}: missing key {key!r}")
        if not isinstance(entry[key], list):
            raise AnnotationError(f"{where}: {key!r} must be a list, got "
                                  f"{type(entry[key]).__name__}")
    lengths = {k: len(entry[k]) for k in ("start", "end", "text")}
    if len(set(lengths.values())) != 1:
        raise AnnotationError(f"{where}: start, end and text lengths differ: "
                              f"{lengths}")
    for i, (start, end, text) in enumerate(zip(
            entry["start"], entry["end"], entry["text"])):
        if not isinstance(text, str):
            raise AnnotationError(f"{where}, caption {i}: text must be a "
                                  f"string, got {text!r}")
        caption = f"{where}, caption {i}"
        _check_span(_json_time(start, caption), _json_time(end, caption), caption)
    return schema.Captions(text=entry["text"], start=entry["start"],
                           end=entry["end"])


def _json_time(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AnnotationError(f"{where}: time {value!r} is not a number")
    return float(value)


def read_caption_csv(path: str | Path) -> schema.Captions:
    """Reads one per-video caption CSV (header `start,end,text`)."""
    texts, starts, ends = [], [], []
    for where, row in _csv_rows(path, ("start", "end", "text")):
        start, end = _csv_time(row["start"], where), _csv_time(row["end"], where)
        _check_span(start, end, where)
        texts.append(row["text"])
        starts.append(start)
        ends.append(end)
    return schema.Captions(text=texts, start=starts, end=ends)


def read_caption_csv_dir(directory: str | Path) -> dict[str, schema.Captions]:
    """Reads every `<video_id>.csv` caption file of a directory."""
    if not fs.isdir(directory):
        raise AnnotationError(f"{directory}: not a directory")
    return {n[:-len(".csv")]: read_caption_csv(fs.join(directory, n))
            for n in fs.listdir(directory) if n.endswith(".csv")}


def read_segments_csv(path: str | Path) -> dict[str, schema.Segments]:
    """Reads ground-truth steps (header `video_id,label,start,end`).

    Returns:
        Per video id, its steps sorted by start time: int64 [N] labels and
        float32 [N] start/end seconds.
    """
    steps = collections.defaultdict(list)
    for where, row in _csv_rows(path, ("video_id", "label", "start", "end")):
        try:
            label = int(row["label"])
        except ValueError:
            raise AnnotationError(f"{where}: label {row['label']!r} is not an "
                                  f"integer") from None
        start, end = _csv_time(row["start"], where), _csv_time(row["end"], where)
        _check_span(start, end, where)
        steps[row["video_id"]].append((start, end, label))
    out = {}
    for video_id, rows in steps.items():
        rows.sort(key=lambda r: r[0])
        start, end, label = zip(*rows)
        out[video_id] = schema.Segments(label=np.asarray(label, np.int64),
                                        start=np.asarray(start, np.float32),
                                        end=np.asarray(end, np.float32))
    return out


def read_durations_csv(path: str | Path) -> dict[str, float]:
    """Reads video durations in seconds (header `video_id,duration`)."""
    out = {}
    for where, row in _csv_rows(path, ("video_id", "duration")):
        duration = _csv_time(row["duration"], where)
        if not math.isfinite(duration) or duration <= 0:
            raise AnnotationError(f"{where}: duration must be a positive number "
                                  f"of seconds, got {row['duration']!r}")
        out[row["video_id"]] = duration
    return out


def _csv_rows(path, columns: tuple[str, ...]) -> Iterator[tuple[str, dict]]:
    """Yields (`"<path>, line <n>"`, row dict) for each data row of a CSV."""
    with fs.open(path) as f:
        reader = csv.DictReader(f)
        missing = [c for c in columns if c not in (reader.fieldnames or ())]
        if missing:
            raise AnnotationError(f"{path}: header {reader.fieldnames} lacks "
                                  f"column(s) {missing}")
        for row in reader:
            where = f"{path}, line {reader.line_num}"
            if any(row[c] is None for c in columns):
                raise AnnotationError(f"{where}: expected {len(reader.fieldnames)}"
                                      f" fields, got fewer")
            yield where, row


def _csv_time(text: str, where: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise AnnotationError(f"{where}: time {text!r} is not a number") from None


def _check_span(start: float, end: float, where: str) -> None:
    for name, value in (("start", start), ("end", end)):
        if not math.isfinite(value) or value < 0:
            raise AnnotationError(f"{where}: {name} must be a finite, "
                                  f"non-negative number of seconds, got {value}")
    if end < start:
        raise AnnotationError(f"{where}: ends ({end}) before it starts ({start})")
