"""YouTube-8M frame-level feature records as a conversion source (Hessel et al. 2020).

Input layout (YouTube-8M frame-level features, as released): TFRecord files
of `tf.train.SequenceExample`s with context `id` (bytes) and `labels` (int64
list of class indices) and two feature lists with one bytes feature per
second of video: `rgb` (1024 uint8, quantised Inception features) and
`audio` (128 uint8, quantised VGGish features). Values are dequantised as
the dataset's starter code does, for q in [0, 255], min -2 and max 2:

    x = q · (max − min) / 255 + (max − min) / 512 + min

Output: one vtlearn video per record, joined with its ASR caption track by
id (the caption formats of `vtlearn.data.captions`): `rgb` goes to
`FEATURES/2d/floats` and, YouTube-8M having no motion stream, `audio` to
`FEATURES/3d/floats` (leave it out with `streams=("rgb",)`); 1 feature step
per second; duration = number of steps; `video/labels` keeps every label and
`video/category` is the first (-1 without labels).

    python -m vtlearn.data.convert youtube8m --records '/data/yt8m/frame/train*.tfrecord' \\
        --captions /data/yt8m/asr.json --out_prefix /data/records/yt8m/train --num_shards 512

Faults: a frame whose byte string is not 1024 (rgb) or 128 (audio) long, or
streams that differ by more than one step, fail that video (listed with the
record's file and id in the summary); a file cut inside a record, or an id
seen twice, stops the indexing with an error naming the file.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from vtlearn import fs
from vtlearn.data import schema

STREAM_DIMS = {"rgb": 1024, "audio": 128}
OUTPUT_STREAM = {"rgb": "2d", "audio": "3d"}
QUANTIZED_MIN, QUANTIZED_MAX = -2.0, 2.0


def dequantize(values: np.ndarray, low: float = QUANTIZED_MIN,
               high: float = QUANTIZED_MAX) -> np.ndarray:
    """uint8 quantised features -> float32, as YouTube-8M's starter code."""
    scale = (high - low) / 255.0
    return (np.asarray(values, np.float32) * scale + (high - low) / 512.0 + low).astype(
        np.float32)


def tfrecord_offsets(path: str) -> Iterator[tuple[int, bytes]]:
    """(byte offset, payload) of every record of a TFRecord file.

    Framing: uint64 length, uint32 length CRC, payload, uint32 payload CRC
    (CRCs are not checked). Raises ValueError naming the file and offset if
    it ends inside a record.
    """
    with fs.open(path, "rb") as f:
        while True:
            offset = f.tell()
            header = f.read(12)
            if not header:
                return
            if len(header) < 12:
                raise ValueError(f"{path}: file ends inside the record header at byte {offset}")
            (length,) = struct.unpack("<Q", header[:8])
            payload = f.read(length)
            if len(payload) < length or len(f.read(4)) < 4:
                raise ValueError(f"{path}: file ends inside the record at byte {offset} "
                                 f"({length} bytes announced)")
            yield offset, payload


def _record_at(path: str, offset: int) -> bytes:
    with fs.open(path, "rb") as f:
        f.seek(offset)
        (length,) = struct.unpack("<Q", f.read(12)[:8])
        return f.read(length)


def read_record(where: str):
    """The `tf.train.SequenceExample` at "path@offset" (`index_records`)."""
    path, _, offset = where.rpartition("@")
    return _parse(_record_at(path, int(offset)))


def _parse(payload: bytes):
    import tensorflow as tf

    return tf.train.SequenceExample.FromString(payload)


def index_records(pattern: str | Sequence[str]) -> dict[str, str]:
    """YouTube-8M id -> "path@offset" of its record, over the files of `pattern`.

    Raises:
      ValueError: no file matches, a file is cut inside a record, a record has
        no `id`, or an id appears twice (naming both places).
    """
    patterns = pattern.split(",") if isinstance(pattern, str) else list(pattern)
    paths = sorted({p for pat in patterns for p in fs.glob(pat)})
    if not paths:
        raise ValueError(f"no YouTube-8M record file matches {pattern!r}")
    found: dict[str, str] = {}
    for path in paths:
        for offset, payload in tfrecord_offsets(path):
            ids = _parse(payload).context.feature["id"].bytes_list.value
            if len(ids) != 1:
                raise ValueError(f"{path}: the record at byte {offset} has no context 'id'")
            video_id = ids[0].decode()
            if video_id in found:
                raise ValueError(f"YouTube-8M id {video_id} appears twice: {found[video_id]} "
                                 f"and {path}@{offset}")
            found[video_id] = f"{path}@{offset}"
    return found


@dataclasses.dataclass(frozen=True)
class YouTube8MLoader:
    """Reads one YouTube-8M record (`source.inputs["youtube8m"]` = "path@offset").

    Attributes:
      streams: which of "rgb", "audio" to keep.
      dims: bytes per step of each stream (the release's 1024 and 128; records
        in this format with other sizes, e.g. the lab's export, set theirs).
    """

    streams: tuple[str, ...] = ("rgb", "audio")
    dims: tuple[tuple[str, int], ...] = tuple(STREAM_DIMS.items())

    def __post_init__(self):
        if not self.streams or set(self.streams) - set(STREAM_DIMS):
            raise ValueError(f"streams must be a non-empty subset of {tuple(STREAM_DIMS)}, "
                             f"got {self.streams}")

    def __call__(self, source) -> tuple[schema.Video, list[str]]:
        path = source.inputs["youtube8m"].rpartition("@")[0]
        example = read_record(source.inputs["youtube8m"])
        where = f"{path}, record {source.video_id}"
        dims = dict(self.dims)
        feats = {}
        for stream in self.streams:
            frames = example.feature_lists.feature_list[stream].feature
            if not frames:
                raise ValueError(f"{where}: no '{stream}' feature list")
            rows = []
            for i, frame in enumerate(frames):
                raw = frame.bytes_list.value[0] if frame.bytes_list.value else b""
                if len(raw) != dims[stream]:
                    raise ValueError(f"{where}: {stream} step {i} has {len(raw)} bytes, "
                                     f"expected {dims[stream]} (truncated feature list?)")
                rows.append(np.frombuffer(raw, np.uint8))
            feats[stream] = dequantize(np.stack(rows))
        from vtlearn.data.convert import align_streams  # here: convert imports PyAV

        feats, warnings = align_streams(feats, f"{where}: ")
        n = len(next(iter(feats.values())))
        labels = [int(x) for x in example.context.feature["labels"].int64_list.value]
        out = {OUTPUT_STREAM[s]: f for s, f in feats.items()}
        return schema.Video(
            video_id=source.video_id, duration=float(n), captions=source.captions,
            features_2d=out.get("2d"), features_3d=out.get("3d"), feature_rate=1.0,
            segments=source.segments, category=labels[0] if labels else -1,
            labels=labels), warnings


def convert_youtube8m(records: str, out_prefix: str | Path, num_shards: int, *,
                      streams: tuple[str, ...] = ("rgb", "audio"), captions=None,
                      **kwargs) -> dict:
    """Converts the YouTube-8M records of `records` (glob, comma-separated globs).

    Args:
      records: frame-level record files.
      out_prefix, num_shards: output shards.
      streams: "rgb" and/or "audio".
      captions: ASR caption tracks per YouTube-8M id.
      **kwargs: `vtlearn.data.convert.convert` options.

    Returns:
      The summary of `vtlearn.data.convert.convert`.
    """
    from vtlearn.data import convert

    inputs = {vid: {"youtube8m": where} for vid, where in index_records(records).items()}
    sources, missing = convert.make_sources(inputs, captions)
    return convert.convert(sources, YouTube8MLoader(tuple(streams)), out_prefix, num_shards,
                           missing=missing, **kwargs)
