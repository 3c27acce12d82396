"""Where a run's records come from: user TFRecords or the built-in lab.

`config.data.lab` names a synthetic-lab preset ("tiny", "local"); unless
`data.train_files` is given, the lab is generated (or found in its cache) and
`data.train_files`, `data.eval_files`, `data.probe_files` and
`data.vocab_path` are filled in from it, and evaluation reads its noise-free
captions (`data.eval_text_key`). `config.lab` holds overrides of the preset's
settings (e.g. `misaligned_fraction`). Otherwise `data.train_files` and
`data.vocab_path` must point at records: a preset (`:local`) given the user's
`data.train_files` keeps its sizes and schedule and reads none of the lab.
"""

from __future__ import annotations

import dataclasses
import os

import ml_collections
from absl import logging

from vtlearn.data import schema

NO_DATA_MESSAGE = (
    "No training data: set --config.data.train_files='/path/train-*.tfrecord' and "
    "--config.data.vocab_path=vocab.txt (`python -m vtlearn.data.convert vocab`; see "
    "README, 'Training on your own data'), or use "
    "the synthetic lab preset, e.g. --config=configs/milnce_s3d.py:local")


class NoDataError(ValueError):
    """The config names neither records nor a lab preset."""


def resolve_data(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A copy of `config` whose data section points at concrete files."""
    config = ml_collections.ConfigDict(config.to_dict())
    data = config.data
    if data.lab and not data.train_files:
        from vtlearn.data import lab

        settings = lab.lab_config(data.lab)
        overrides = config.get("lab", {}) or {}
        overrides = overrides.to_dict() if hasattr(overrides, "to_dict") else dict(overrides)
        if dataclasses.is_dataclass(settings):
            settings = dataclasses.replace(settings, **overrides)
        else:
            settings.update(overrides)
        cache = data.lab_dir or os.environ.get("VTLEARN_DATA_DIR") or None
        ds = lab.generate_lab(settings, cache)
        data.train_files = _pattern(ds.train_files)
        data.eval_files = data.eval_files or _pattern(ds.test_files)
        # The probe's classifier is fit on the val split, labelled videos held
        # out from pre-training (as HMDB/UCF are), and scored on the test split.
        data.probe_files = data.probe_files or _pattern(ds.val_files)
        data.vocab_path = data.vocab_path or str(ds.vocab_path)
        data.eval_text_key = data.eval_text_key or schema.CAPTION_CLEAN
    elif data.lab:
        logging.info("data.train_files is given: the %r lab preset's records are not used.",
                     data.lab)
    if not data.train_files or not data.vocab_path:
        raise NoDataError(NO_DATA_MESSAGE)
    return config


def _pattern(files) -> str:
    return files if isinstance(files, str) else ",".join(str(f) for f in files)
