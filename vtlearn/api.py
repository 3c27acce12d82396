"""Using a trained model: load a run, embed, evaluate.

    import vtlearn
    model = vtlearn.load("/tmp/run")               # a run's workdir, latest step
    text = model.embed_text(["cut the onion", "whisk the eggs"])   # [2, D]
    video = model.embed_video(clips)               # uint8 [N, T, H, W, 3] -> [N, D]
    scores = model.similarity(text, video)         # [2, N]
    model.evaluate()                               # the run's config.evals

Methods may offer published weights as the same `Model`, e.g.
`vtlearn.load_milnce_release` (`vtlearn.methods.milnce`).

A run's workdir is self-contained: `config.json` and `vocab.txt` (written by
the trainer, `vtlearn.run_config`) and `checkpoints/`. Loading needs no
training flags or data and installs no signal handler. `load_pretrained`
gives the same weights to a new run (`config.model_init`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging

from vtlearn import checkpointing, fs, run_config, sharding
from vtlearn.data.text import Vocabulary
from vtlearn.evaluation import base as evaluation_base


@dataclasses.dataclass
class Model:
    """A trained method with its variables, ready to embed raw text and video.

    Attributes:
      config: the run's config (`data.vocab_path` points at its vocabulary).
      method: the `vtlearn.methods.base.Method`.
      params, model_state: replicated over `mesh`.
      vocab: the text vocabulary.
      mesh: the device mesh (all devices).
      step: the training step of the weights (0 for imported weights).
    """

    config: ml_collections.ConfigDict
    method: Any
    params: Any
    model_state: Any
    vocab: Vocabulary
    mesh: jax.sharding.Mesh
    step: int

    @property
    def variables(self) -> Model:
        """What evaluators read (`params`, `model_state`): the model itself."""
        return self

    def tokenize(self, texts: Sequence[str]) -> np.ndarray:
        """Token ids int32 [N, max_words] (lowercased, OOV dropped, 0 = padding)."""
        return self.vocab.encode_batch(texts, self.config.data.max_words)

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """Joint-space embeddings [N, D] of raw texts."""
        if isinstance(texts, str):
            raise TypeError("embed_text takes a list of texts, got one string")
        return evaluation_base.embed_token_ids(self.method, self, self.mesh,
                                               self.tokenize(texts), self._batch_size)

    def video_outputs(self, clips: np.ndarray | Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every output of the method's `embed_video` for N clips.

        Args:
          clips: pixels [N, T, H, W, 3], uint8 in [0, 255] or floats in [0, 1]
            (T frames at `config.data.fps`, H = W = `config.data.eval_crop_size`
            as trained; other sizes work with fully convolutional towers), or
            a dict of clip inputs with leading N, e.g. {"features_2d": [N, D2],
            "features_3d": [N, D3]} for a feature-tower model.

        Returns:
          {"embedding": [N, D], and e.g. "features": [N, F]}.
        """
        inputs = dict(clips) if isinstance(clips, Mapping) else {"video": np.asarray(clips)}
        unknown = set(inputs) - set(evaluation_base.CLIP_KEYS)
        if unknown:
            raise ValueError(f"unknown clip inputs {sorted(unknown)}; use "
                             f"{evaluation_base.CLIP_KEYS}")
        video = inputs.get("video")
        if video is not None and (video.ndim != 5 or video.shape[-1] != 3):
            raise ValueError(f"video clips must be [N, T, H, W, 3], got {video.shape}")
        if video is not None and video.dtype != np.uint8:
            inputs["video"] = video.astype(np.float32)
        video_fn, _ = evaluation_base._jitted(self.method)
        return evaluation_base.embed_in_batches(video_fn, self, self.mesh, inputs,
                                                self._batch_size)

    def embed_video(self, clips: np.ndarray | Mapping[str, np.ndarray]) -> np.ndarray:
        """Joint-space embeddings [N, D] of N clips (see `video_outputs`)."""
        return self.video_outputs(clips)["embedding"]

    def similarity(self, text: np.ndarray, video: np.ndarray | Mapping[str, np.ndarray]
                   ) -> np.ndarray:
        """The method's retrieval scores [Q, N] of text [Q, D] against videos.

        `video` is `embed_video`'s [N, D] or `video_outputs`' dict.
        """
        outputs = video if isinstance(video, Mapping) else {"embedding": video}
        return self.method.similarity(text, outputs)

    def evaluate(self, names: Sequence[str] | None = None,
                 workdir: str | Path | None = None) -> dict[str, float]:
        """Runs the config's evaluators (or `names`); metrics prefixed by name.

        Args:
          names: keys of `config.evals` (default: all).
          workdir: where evaluators write artefacts (default: none).
        """
        from vtlearn.evaluation import build_evaluators

        evaluators = build_evaluators(self.method, self.mesh, self.config, workdir, names)
        return {f"{name}/{k}": v for name, e in evaluators.items()
                for k, v in e.run(self, self.step).items()}

    @property
    def _batch_size(self) -> int:
        return self.config.eval_batch_size


def load(workdir: str | Path, step: int | None = None) -> Model:
    """Restores a run from its workdir alone.

    Args:
      workdir: a directory `python -m vtlearn.main` trained in.
      step: checkpoint step (default: the latest).

    Raises:
      checkpointing.NoCheckpointError: no checkpoint (or no such step).
      FileNotFoundError: the workdir has no `config.json`.
    """
    from vtlearn.train import Trainer

    ckpt = checkpointing.Checkpointer(workdir, read_only=True)
    try:
        config = run_config.load(workdir)
        if config is None:
            raise FileNotFoundError(
                f"{fs.join(workdir, run_config.CONFIG_FILE)} does not exist: a run from "
                "before runs saved their config, or not a vtlearn run directory")
        mesh = sharding.make_mesh()
        trainer = Trainer(config, mesh)
        state, _ = ckpt.restore(trainer.abstract_state(), step)
    finally:
        ckpt.close()
    return Model(config, trainer.method, state.params, state.model_state,
                 Vocabulary.load(config.data.vocab_path), mesh, int(state.step))


def load_pretrained(source: str, config: ml_collections.ConfigDict, method) -> tuple[Any, Any]:
    """(params, model state) for `config.model_init`.

    Args:
      source: a vtlearn workdir (its latest checkpoint), or a weight file the
        method reads itself (`Method.external_weights`, e.g. the MIL-NCE
        release's `.pth` for the video-text towers).
      config: the new run's resolved config.
      method: the new run's method.

    Raises:
      ValueError: naming `config.model_init` when the run's vocabulary differs
        from the source's (word ids would point at other words).
    """
    if not fs.isdir(source):
        return method.external_weights(source)
    model = load(source)
    vocab = Vocabulary.load(config.data.vocab_path)
    if model.vocab.words != vocab.words:
        raise ValueError(f"config.model_init={source!r} was trained with another vocabulary "
                         f"({len(model.vocab.words)} words) than config.data.vocab_path "
                         f"({len(vocab.words)} words); use its {source}/vocab.txt")
    logging.info("Starting from %s (step %d).", source, model.step)
    return model.params, model.model_state


def merge_pretrained(fresh: Any, pretrained: Any) -> Any:
    """`fresh` with every leaf of `pretrained` put in its place.

    Every pretrained leaf must exist in `fresh` with the same shape; fresh
    leaves it lacks (e.g. a new head) keep their initial values (logged).

    Raises:
      ValueError: listing pretrained leaves missing from, or shaped unlike, `fresh`.
    """
    fresh_leaves = _flat(fresh)
    loaded = _flat(pretrained)
    missing = [p for p in loaded if p not in fresh_leaves]
    wrong = [(p, np.shape(loaded[p]), np.shape(fresh_leaves[p])) for p in loaded
             if p in fresh_leaves and np.shape(loaded[p]) != np.shape(fresh_leaves[p])]
    if missing or wrong:
        raise ValueError(f"config.model_init does not fit this model: {len(missing)} "
                         f"pretrained leaves it lacks (e.g. {missing[:3]}), {len(wrong)} of "
                         f"another shape (pretrained vs model, e.g. {wrong[:3]})")
    kept = [p for p in fresh_leaves if p not in loaded]
    if kept:
        logging.info("model_init: %d leaves keep their initial values, e.g. %s", len(kept),
                     kept[:3])
    merged = {p: loaded.get(p, v) for p, v in fresh_leaves.items()}
    leaves = [jax.numpy.asarray(merged[p], fresh_leaves[p].dtype) for p in fresh_leaves]
    return jax.tree.unflatten(jax.tree.structure(fresh), leaves)


def _flat(tree) -> dict[str, Any]:
    """{"0/video/conv1/kernel": leaf} in tree order."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {"/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path): leaf
            for path, leaf in flat}
