"""Paths on any filesystem: local ones, and `gs://` and the other URLs of `tf.io.gfile`.

Everything in vtlearn that lists, reads or writes a run's or a dataset's
files (record patterns, vocabularies, word lists, the workdir's config,
metrics, TensorBoard events, evaluation logs and checkpoints, the lab and
the converters' outputs) goes through these functions, so a path may be
local (`/data/x`, `runs/a`) or a URL (`gs://bucket/x`, `ram://x`, `hdfs://...`)
wherever vtlearn takes one. Local paths use Python's own file functions, as
before; URLs use `tf.io.gfile`, whose filesystems (GCS included) come with
TensorFlow. `pathlib.Path` must not touch a URL: it folds `gs://b` into
`gs:/b`, a local folder.
"""

from __future__ import annotations

import contextlib
import glob as globlib
import os
import posixpath
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from typing import IO

_URL = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")


def scheme(path: str | os.PathLike) -> str:
    """The URL scheme of `path` ("gs", "ram", ...), or "" for a local path."""
    match = _URL.match(os.fspath(path))
    return match.group(1).lower() if match else ""


def is_local(path: str | os.PathLike) -> bool:
    return not scheme(path)


def _gfile():
    import tensorflow as tf  # noqa: PLC0415 - only URLs need TensorFlow

    return tf.io.gfile


def join(path: str | os.PathLike, *parts: str) -> str:
    """`path/part/...`, keeping a URL's `scheme://`."""
    path = os.fspath(path)
    return os.path.join(path, *parts) if is_local(path) else posixpath.join(path, *parts)


def absolute(path: str | os.PathLike) -> str:
    """A local path made absolute; a URL as given."""
    path = os.fspath(path)
    return os.path.abspath(path) if is_local(path) else path


def name(path: str | os.PathLike) -> str:
    """The last component of `path`."""
    return posixpath.basename(os.fspath(path).rstrip("/"))


def exists(path: str | os.PathLike) -> bool:
    path = os.fspath(path)
    return os.path.exists(path) if is_local(path) else _gfile().exists(path)


def isdir(path: str | os.PathLike) -> bool:
    path = os.fspath(path)
    return os.path.isdir(path) if is_local(path) else _gfile().isdir(path)


def makedirs(path: str | os.PathLike) -> None:
    path = os.fspath(path)
    if is_local(path):
        os.makedirs(path, exist_ok=True)
    else:
        _gfile().makedirs(path)


def glob(pattern: str | os.PathLike) -> list[str]:
    """The sorted paths that `pattern` matches (`*`, `?`, `[...]`)."""
    pattern = os.fspath(pattern)
    return sorted(globlib.glob(pattern) if is_local(pattern) else _gfile().glob(pattern))


def listdir(path: str | os.PathLike) -> list[str]:
    """The sorted names in a directory."""
    path = os.fspath(path)
    names = os.listdir(path) if is_local(path) else _gfile().listdir(path)
    return sorted(n.rstrip("/") for n in names)


def walk_files(path: str | os.PathLike) -> Iterator[str]:
    """Every file under `path`, as paths relative to it."""
    path = os.fspath(path)
    walk = os.walk(path) if is_local(path) else _gfile().walk(path)
    for root, _, files in walk:
        for f in files:
            yield posixpath.relpath(join(root, f), path)


def size(path: str | os.PathLike) -> int:
    path = os.fspath(path)
    return os.path.getsize(path) if is_local(path) else _gfile().stat(path).length


def modified_ns(path: str | os.PathLike) -> int:
    """Last modification time, nanoseconds since the epoch."""
    path = os.fspath(path)
    return os.stat(path).st_mtime_ns if is_local(path) else _gfile().stat(path).mtime_nsec


def open(path: str | os.PathLike, mode: str = "r", encoding: str | None = "utf-8") -> IO:  # noqa: A001
    """`open` for any path; text modes read and write UTF-8."""
    path = os.fspath(path)
    if is_local(path):
        import builtins  # noqa: PLC0415

        return builtins.open(path, mode, encoding=None if "b" in mode else encoding)
    return _gfile().GFile(path, mode)


def read_text(path: str | os.PathLike) -> str:
    with open(path) as f:
        return f.read()


def read_bytes(path: str | os.PathLike) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def write_text(path: str | os.PathLike, text: str) -> None:
    """Writes `text` whole, through a temporary file renamed over `path`: a
    reader sees the old or the new file, never a part. (Writing over a longer
    `ram://` file in place keeps its tail.)"""
    path = os.fspath(path)
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    with open(tmp, "w") as f:
        f.write(text)
    replace(tmp, path)


def replace(source: str | os.PathLike, target: str | os.PathLike) -> None:
    """Renames a file over `target` (same filesystem)."""
    source, target = os.fspath(source), os.fspath(target)
    if is_local(source):
        os.replace(source, target)
    else:
        _gfile().rename(source, target, overwrite=True)


def remove(path: str | os.PathLike) -> None:
    path = os.fspath(path)
    if is_local(path):
        os.remove(path)
    else:
        _gfile().remove(path)


def rmtree(path: str | os.PathLike) -> None:
    path = os.fspath(path)
    if is_local(path):
        shutil.rmtree(path)
    else:
        _gfile().rmtree(path)


@contextlib.contextmanager
def local_copy(path: str | os.PathLike) -> Iterator[str]:
    """A local path holding `path`'s file (itself if local, else a temporary copy
    deleted on exit), for readers that open only local files."""
    path = os.fspath(path)
    if is_local(path):
        yield path
        return
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, name(path))
        copy(path, local)
        yield local


def copy(source: str | os.PathLike, target: str | os.PathLike) -> None:
    """Copies one file between any two filesystems, replacing `target`."""
    source, target = os.fspath(source), os.fspath(target)
    if is_local(source) and is_local(target):
        shutil.copyfile(source, target)
    else:
        _gfile().copy(source, target, overwrite=True)
