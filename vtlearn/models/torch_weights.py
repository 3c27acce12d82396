"""PyTorch weight files (`.pth`) read as NumPy, without running pickled code.

`torch.load(..., weights_only=True)` admits only tensors and plain
containers; torch is an optional extra (`milnce_release`, also in `test`).
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from vtlearn import fs


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """The flat state dict of a `.pth`, keys without DataParallel's `module.`.

    The file may hold a state dict (str -> tensor) or a training checkpoint
    with one under "state_dict".

    Raises:
        ImportError: torch is not installed.
        ValueError: naming the file, when it holds neither.
    """
    try:
        import torch
    except ImportError as e:
        raise ImportError(f"reading {path} needs torch: pip install 'vtlearn[milnce_release]'"
                          ) from e
    source = path if fs.is_local(path) else io.BytesIO(fs.read_bytes(path))
    return _state_dict(torch.load(source, map_location="cpu", weights_only=True), path)


def _state_dict(checkpoint: object, path: str | Path) -> dict[str, np.ndarray]:
    """The flat state dict in a loaded .pth, keys without DataParallel's `module.`.

    Args:
        checkpoint: what `torch.load` returned: a state dict (str -> tensor),
            or a training checkpoint holding one under "state_dict".
        path: the file, for the error message.

    Raises:
        ValueError: `checkpoint` is neither.
    """
    import torch

    wrapped = isinstance(checkpoint, Mapping) and "state_dict" in checkpoint
    state = checkpoint["state_dict"] if wrapped else checkpoint
    if isinstance(state, Mapping):
        bad = [f"{k!r}: {type(v).__name__}" for k, v in state.items()
               if not (isinstance(k, str) and isinstance(v, torch.Tensor))]
        if state and not bad:
            return {k.removeprefix("module."): v.numpy() for k, v in state.items()}
        got = f"a {type(state).__name__} of {len(state)} entries, {len(bad)} not str -> tensor"
        got += f" ({', '.join(bad[:5])}{', ...' if len(bad) > 5 else ''})" if bad else ""
    else:
        got = f"a {type(state).__name__}"
    raise ValueError(f"{path}: expected a state dict (str -> tensor) or a training checkpoint "
                     f"with one under 'state_dict', got "
                     f"{'a checkpoint whose state_dict is ' if wrapped else ''}{got}")
