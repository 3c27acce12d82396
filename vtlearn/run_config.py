"""A run's resolved config and vocabulary in its workdir, checked on resume.

The trainer writes `config.json` (the data-resolved config) and `vocab.txt`
(a copy of the vocabulary, so a workdir is self-contained) when a run
starts; `vtlearn.load` reads both. A resumed run compares its config with
the saved one: keys in `MAY_CHANGE` may differ (the change is logged and the
file updated); any other difference, or a vocabulary whose words differ,
refuses to resume with a message naming every key, since the checkpoint
would be continued as a different run or fail to restore.
"""

from __future__ import annotations

import json
import os
from typing import Any

import ml_collections
from absl import logging

from vtlearn import fs
from vtlearn.data.text import Vocabulary

CONFIG_FILE = "config.json"
VOCAB_FILE = "vocab.txt"

# Dotted keys (or prefixes ending in ".") that a resumed run may change: how
# long and how often it runs, where it reads evaluation data, what it evaluates,
# and settings read only when a run starts from scratch.
MAY_CHANGE = (
    "name", "train.num_steps", "train.log_every", "train.checkpoint_every",
    "train.keep_checkpoints", "evals.", "eval_batch_size", "data.eval_files",
    "data.probe_files", "data.eval_text_key", "data.eval_num_clips", "data.eval_crop_size",
    "data.lab_dir", "data.train_files", "data.vocab_path", "data.shuffle_buffer",
    "data.cycle_length", "model.text.word2vec_path", "model_init",
)


class ConfigChangedError(ValueError):
    """A resumed run's config differs from its workdir's in a key that may not change."""


def flatten(config: ml_collections.ConfigDict | dict) -> dict[str, Any]:
    """{"a.b.c": value} with tuples as lists (the JSON form)."""
    tree = config.to_dict() if hasattr(config, "to_dict") else config
    out = {}

    def walk(node, prefix):
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            else:
                out[f"{prefix}{key}"] = json.loads(json.dumps(value))
    walk(tree, "")
    return out


def differences(saved: dict, current: dict) -> dict[str, tuple[Any, Any]]:
    """{key: (saved, current)} of every key whose value differs ("<absent>" if missing)."""
    a, b = flatten(saved), flatten(current)
    return {k: (a.get(k, "<absent>"), b.get(k, "<absent>"))
            for k in sorted(set(a) | set(b)) if a.get(k, "<absent>") != b.get(k, "<absent>")}


def may_change(key: str) -> bool:
    return any(key == p or (p.endswith(".") and key.startswith(p)) for p in MAY_CHANGE)


def load(workdir: str | os.PathLike) -> ml_collections.ConfigDict | None:
    """The config saved in `workdir` (None if there is none), vocab_path pointing at its copy."""
    path = fs.join(workdir, CONFIG_FILE)
    if not fs.exists(path):
        return None
    config = ml_collections.ConfigDict(_tuples(json.loads(fs.read_text(path))))
    config.data.vocab_path = fs.join(workdir, VOCAB_FILE)
    return config


def _tuples(node):
    """JSON lists back to tuples (configs use tuples for sequences)."""
    if isinstance(node, dict):
        return {k: _tuples(v) for k, v in node.items()}
    if isinstance(node, list):
        return tuple(_tuples(v) for v in node)
    return node


def check(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> None:
    """Checks a resuming run's config and vocabulary against those saved in `workdir`.

    Logs the keys in `MAY_CHANGE` that differ; nothing to check if the run
    saved no config (older runs).

    Raises:
      ConfigChangedError: when a key outside `MAY_CHANGE` or the vocabulary's
        words differ from the saved run's.
    """
    saved_path = fs.join(workdir, CONFIG_FILE)
    if not fs.exists(saved_path):
        return
    changed = differences(json.loads(fs.read_text(saved_path)), config)
    refused = {k: v for k, v in changed.items() if not may_change(k)}
    saved, vocab = (Vocabulary.load(fs.join(workdir, VOCAB_FILE)),
                    Vocabulary.load(config.data.vocab_path))
    if saved.words != vocab.words:
        differing = sum(a != b for a, b in zip(saved.words, vocab.words))
        refused["vocabulary (data.vocab_path)"] = (
            f"{len(saved.words)} words", f"{len(vocab.words)} words, {differing} of the "
            "shared ids map to other words")
    if refused:
        lines = "\n".join(f"  {k}: {a!r} -> {b!r}" for k, (a, b) in refused.items())
        raise ConfigChangedError(
            f"{workdir} holds a run whose config differs in keys that may not change "
            f"on resume:\n{lines}\nUse a new --workdir (add --config.model_init={workdir} "
            "to start from this run's weights), or restore these values.")
    for k, (a, b) in changed.items():
        logging.info("Resuming with %s changed: %r -> %r", k, a, b)


def save(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> None:
    """Writes `config.json` and a copy of the vocabulary into `workdir`."""
    fs.makedirs(workdir)
    fs.write_text(fs.join(workdir, CONFIG_FILE),
                     json.dumps(config.to_dict(), indent=1, sort_keys=True))
    Vocabulary.load(config.data.vocab_path).save(fs.join(workdir, VOCAB_FILE))
