"""Writing and parsing vtlearn records (layout documented in `schema`).

`video_to_examples` cuts a `schema.Video` into chunk records (serialized
deterministically: the same video gives the same bytes in any process);
`write_tfrecord` writes a shard atomically; `parse_example` is the tf.data
parse step; `read_chunks` reads records back into NumPy for tools and tests.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image

from vtlearn import fs
from vtlearn.data import schema as S


def encode_jpeg(frame: np.ndarray, quality: int = 90) -> bytes:
    """JPEG bytes of a uint8 [H, W, 3] frame."""
    buf = io.BytesIO()
    Image.fromarray(np.asarray(frame, np.uint8)).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _bytes(values: Iterable[bytes | str]) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(
        value=[v.encode("utf-8") if isinstance(v, str) else v for v in values]))


def _floats(values) -> tf.train.Feature:
    # From a list: protobuf copies NumPy arrays element by element, ~6x slower.
    return tf.train.Feature(float_list=tf.train.FloatList(
        value=np.asarray(values, np.float32).reshape(-1).tolist()))


def _ints(values) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(
        value=np.asarray(values, np.int64).reshape(-1).tolist()))


def video_to_examples(video: S.Video,
                      chunk_seconds: float = S.DEFAULT_CHUNK_SECONDS,
                      jpeg_quality: int = 90) -> list[bytes]:
    """Cuts a video into serialized chunk `SequenceExample`s.

    Args:
      video: the whole video.
      chunk_seconds: chunk length; the last chunk may be shorter.
      jpeg_quality: for frames given as uint8 arrays.

    Returns:
      One serialized `tf.train.SequenceExample` per chunk, in time order.
    """
    if chunk_seconds <= 0:
        raise ValueError(f"chunk_seconds must be positive, got {chunk_seconds}")
    if video.duration <= 0:
        raise ValueError(f"video {video.video_id}: duration must be positive, "
                         f"got {video.duration}")
    caps, seg = video.captions, video.segments
    context = {
        S.VIDEO_ID: _bytes([video.video_id]),
        S.DURATION: _floats([video.duration]),
        S.CATEGORY: _ints([video.category]),
        S.CATEGORY_NAME: _bytes([video.category_name]),
        S.LABELS: _ints(list(video.labels)),
        S.FRAME_RATE: _floats([video.frame_rate if video.frames is not None else 0]),
        S.SAMPLE_RATE: _floats([video.sample_rate if video.waveform is not None else 0]),
        S.FEATURE_RATE: _floats([video.feature_rate if (
            video.features_2d is not None or video.features_3d is not None) else 0]),
        S.CAPTION: _bytes(caps.text),
        S.CAPTION_START: _floats(caps.start),
        S.CAPTION_END: _floats(caps.end),
    }
    if caps.clean is not None:
        context[S.CAPTION_CLEAN] = _bytes(caps.clean)
    if caps.step is not None:
        context[S.CAPTION_STEP] = _ints(caps.step)
    if seg is not None:
        context[S.SEGMENT_LABEL] = _ints(seg.label)
        context[S.SEGMENT_START] = _floats(seg.start)
        context[S.SEGMENT_END] = _floats(seg.end)
    if video.frames is not None and len(video.frames):
        first = video.frames[0]
        if isinstance(first, bytes):
            width, height = Image.open(io.BytesIO(first)).size  # reads the header only
        else:
            height, width = first.shape[:2]
        context[S.HEIGHT] = _ints([height])
        context[S.WIDTH] = _ints([width])

    examples = []
    num_chunks = max(1, math.ceil(video.duration / chunk_seconds - 1e-6))
    for c in range(num_chunks):
        t0 = c * chunk_seconds
        t1 = min(video.duration, t0 + chunk_seconds)
        ctx = dict(context)
        ctx[S.CHUNK_START] = _floats([t0])
        ctx[S.CHUNK_END] = _floats([t1])
        lists = {}
        if video.frames is not None:
            a, b = _span(t0, t1, video.frame_rate, len(video.frames))
            frames = video.frames[a:b]
            lists[S.FRAMES] = [_bytes([f if isinstance(f, bytes) else
                                       encode_jpeg(f, jpeg_quality)]) for f in frames]
        if video.waveform is not None:
            a, b = _span(t0, t1, video.sample_rate, len(video.waveform))
            lists[S.WAVEFORM] = [_floats(video.waveform[a:b])]
        for key, feats in ((S.FEATURES_2D, video.features_2d),
                           (S.FEATURES_3D, video.features_3d)):
            if feats is not None:
                a, b = _span(t0, t1, video.feature_rate, len(feats))
                lists[key] = [_floats(f) for f in feats[a:b]]
        examples.append(tf.train.SequenceExample(
            context=tf.train.Features(feature=ctx),
            feature_lists=tf.train.FeatureLists(feature_list={
                k: tf.train.FeatureList(feature=v) for k, v in lists.items()}),
        ).SerializeToString(deterministic=True))
    return examples


def _span(t0: float, t1: float, rate: float, n: int) -> tuple[int, int]:
    """Indices [a, b) of the samples at `rate` Hz whose time lies in [t0, t1)."""
    return min(n, math.ceil(t0 * rate - 1e-6)), min(n, math.ceil(t1 * rate - 1e-6))


def shard_paths(prefix: str | Path, num_shards: int) -> list[str]:
    """`prefix-00000-of-0000N.tfrecord` names for `num_shards` shards."""
    return [f"{prefix}-{i:05d}-of-{num_shards:05d}.tfrecord"
            for i in range(num_shards)]


def write_tfrecord(path: str | Path, examples: Iterable[bytes]) -> int:
    """Writes serialized examples atomically (tmp file, then rename).

    Returns:
      The number of examples written.
    """
    path = str(path)
    tmp = path + ".tmp"
    n = 0
    with tf.io.TFRecordWriter(tmp) as writer:
        for ex in examples:
            writer.write(ex)
            n += 1
    fs.replace(tmp, path)
    return n


# Parsing ---------------------------------------------------------------------

_CONTEXT_SPEC = {
    S.VIDEO_ID: tf.io.FixedLenFeature([], tf.string),
    S.DURATION: tf.io.FixedLenFeature([], tf.float32),
    S.CHUNK_START: tf.io.FixedLenFeature([], tf.float32),
    S.CHUNK_END: tf.io.FixedLenFeature([], tf.float32),
    S.CATEGORY: tf.io.FixedLenFeature([], tf.int64, default_value=-1),
    S.CATEGORY_NAME: tf.io.FixedLenFeature([], tf.string, default_value=""),
    S.LABELS: tf.io.VarLenFeature(tf.int64),
    S.FRAME_RATE: tf.io.FixedLenFeature([], tf.float32, default_value=0.0),
    S.SAMPLE_RATE: tf.io.FixedLenFeature([], tf.float32, default_value=0.0),
    S.FEATURE_RATE: tf.io.FixedLenFeature([], tf.float32, default_value=0.0),
    S.CAPTION: tf.io.VarLenFeature(tf.string),
    S.CAPTION_START: tf.io.VarLenFeature(tf.float32),
    S.CAPTION_END: tf.io.VarLenFeature(tf.float32),
    S.CAPTION_CLEAN: tf.io.VarLenFeature(tf.string),
    S.CAPTION_STEP: tf.io.VarLenFeature(tf.int64),
    S.SEGMENT_LABEL: tf.io.VarLenFeature(tf.int64),
    S.SEGMENT_START: tf.io.VarLenFeature(tf.float32),
    S.SEGMENT_END: tf.io.VarLenFeature(tf.float32),
}


def parse_example(serialized: tf.Tensor, *, frames: bool = True,
                  waveform: bool = False, features_2d: int = 0,
                  features_3d: int = 0) -> dict[str, tf.Tensor]:
    """Parses one chunk record into dense tensors keyed by schema names.

    Args:
      serialized: a scalar tf.string.
      frames: parse `image/encoded` (JPEG bytes, not decoded) -> [F].
      waveform: parse the waveform -> [S] float32.
      features_2d: dimension D2 to parse `FEATURES/2d/floats` -> [N, D2] (0: skip).
      features_3d: dimension D3 to parse `FEATURES/3d/floats` -> [N, D3] (0: skip).

    Returns:
      Context keys as dense tensors (lists as 1-D), plus the requested
      feature lists.

    Raises:
      tf.errors.InvalidArgumentError: (when run) a required key is missing,
        or a requested waveform or feature list holds NaN/Inf.
    """
    seq_spec = {}
    if frames:
        seq_spec[S.FRAMES] = tf.io.FixedLenSequenceFeature([], tf.string)
    if waveform:
        seq_spec[S.WAVEFORM] = tf.io.VarLenFeature(tf.float32)
    if features_2d:
        seq_spec[S.FEATURES_2D] = tf.io.FixedLenSequenceFeature([features_2d],
                                                                tf.float32)
    if features_3d:
        seq_spec[S.FEATURES_3D] = tf.io.FixedLenSequenceFeature([features_3d],
                                                                tf.float32)
    ctx, seq = tf.io.parse_single_sequence_example(
        serialized, context_features=_CONTEXT_SPEC, sequence_features=seq_spec)
    out = {k: tf.sparse.to_dense(v) if isinstance(v, tf.SparseTensor) else v
           for k, v in ctx.items()}
    for k, v in seq.items():
        if isinstance(v, tf.SparseTensor):  # waveform: one element
            v = tf.reshape(tf.sparse.to_dense(v), [-1])
        if v.dtype == tf.float32:  # never feed NaN/Inf to a model
            v = tf.debugging.assert_all_finite(v, f"{k} holds NaN or Inf")
        out[k] = v
    return out


class RecordError(ValueError):
    """A record file is corrupt or a record lacks a required key."""


def read_serialized(path: str | Path) -> Iterator[tf.Tensor]:
    """Yields the serialized records (scalar tf.string) of one TFRecord file.

    Raises:
      RecordError: naming the file and record index, for corrupt or truncated
        bytes.
    """
    records = iter(tf.data.TFRecordDataset(str(path)))
    i = 0
    while True:
        try:
            raw = next(records)
        except StopIteration:
            return
        except tf.errors.OpError as e:
            raise _corrupt(path, i, e) from e
        yield raw
        i += 1


def read_chunks(path: str | Path, **parse_kwargs) -> Iterator[dict[str, np.ndarray]]:
    """Yields parsed records of one TFRecord file as NumPy dicts (tools/tests).

    Raises:
      RecordError: naming the file and record index, for corrupt bytes or a
        record that does not parse (e.g. a missing required key).
    """
    for i, raw in enumerate(read_serialized(path)):
        parsed = parse_checked(raw, f"{path}: record {i}", **parse_kwargs)
        yield {k: v.numpy() for k, v in parsed.items()}


def read_record(path: str | Path, index: int) -> tf.Tensor | None:
    """Record `index` (scalar tf.string) of a TFRecord file, None past its end.

    The records before it are skipped by their length headers, not read.

    Raises:
      RecordError: naming the file and record index, for corrupt bytes.
    """
    try:
        for raw in tf.data.TFRecordDataset(str(path)).skip(index).take(1):
            return raw
    except tf.errors.OpError as e:
        raise _corrupt(path, index, e) from e
    return None


def _corrupt(path: str | Path, index: int, error: tf.errors.OpError) -> RecordError:
    return RecordError(f"{path}: record {index} is corrupt: {error.message.splitlines()[0]}")


def parse_checked(raw: tf.Tensor, where: str, **parse_kwargs) -> dict[str, tf.Tensor]:
    """`parse_example`, raising RecordError("<where> is not a valid vtlearn
    chunk: <missing key or failed check>") when the record does not parse."""
    try:
        return parse_example(raw, **parse_kwargs)
    except tf.errors.InvalidArgumentError as e:
        raise RecordError(f"{where} is not a valid vtlearn chunk: "
                          f"{_explain(raw.numpy(), e)}") from e


def _explain(raw: bytes, error: tf.errors.InvalidArgumentError) -> str:
    """Names missing required keys, else the parser's message without TF noise."""
    try:
        context = tf.train.SequenceExample.FromString(raw).context.feature
    except Exception:  # not even a protocol buffer
        return "not a tf.train.SequenceExample"
    missing = [k for k in S.REQUIRED_CONTEXT if k not in context]
    if missing:
        return "missing required key(s) " + ", ".join(missing)
    where = ""
    if S.VIDEO_ID in context and S.CHUNK_START in context:
        where = (f" (video {context[S.VIDEO_ID].bytes_list.value[0].decode(errors='replace')}"
                 f", chunk at {context[S.CHUNK_START].float_list.value[0]:g} s)")
    message = error.message.split("}} ")[-1].splitlines()[0]
    return message.split(" : Tensor had")[0].strip() + where  # CheckNumerics' own words
