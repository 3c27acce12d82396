"""Using a trained model: load a run (or the public MIL-NCE weights), embed, evaluate.

    import vtlearn
    model = vtlearn.load("/tmp/milnce")            # a run's workdir, latest step
    text = model.embed_text(["cut the onion", "whisk the eggs"])   # [2, D]
    video = model.embed_video(clips)               # uint8 [N, T, H, W, 3] -> [N, D]
    scores = model.similarity(text, video)         # [2, N]
    model.evaluate()                               # the run's config.evals

    release = vtlearn.load_milnce_release("s3d_howto100m.pth", "s3d_dict.npy")

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

from vtlearn import checkpointing, run_config, sharding
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
                f"{Path(workdir) / run_config.CONFIG_FILE} does not exist: a run from "
                "before runs saved their config, or not a vtlearn run directory")
        mesh = sharding.make_mesh()
        trainer = Trainer(config, mesh)
        state, _ = ckpt.restore(trainer.abstract_state(), step)
    finally:
        ckpt.close()
    return Model(config, trainer.method, state.params, state.model_state,
                 Vocabulary.load(config.data.vocab_path), mesh, int(state.step))


def release_config(weights_path: str | Path, dict_path: str | Path,
                   pool_padding: str = "pytorch_port") -> ml_collections.ConfigDict:
    """A MIL-NCE config describing the public S3D release's architecture.

    S3D-G with space-to-depth stem and gating, BN epsilon 1e-5, 512-d joint
    space, 300-d words through a 2048-d hidden layer, the padding id inside
    the text max-pool, raw dot-product scores; 32 frames at 10 fps, 224x224
    crops and 16 words, as in the release's examples.
    """
    from vtlearn import config_defaults

    config = config_defaults.base_config("milnce_release", "milnce")
    config.model = ml_collections.ConfigDict(dict(
        embedding_dim=512,
        video=dict(name="s3d", stem="space_to_depth", gating=True, bn_epsilon=1e-5,
                   bn_momentum=0.9, bn_per_device=False, pool_padding=pool_padding,
                   conv_lowering="factorized"),
        text=dict(word_dim=300, hidden_dim=2048, pad_in_max=True,
                  freeze_word_embeddings=True, word2vec_path="")))
    config.loss = ml_collections.ConfigDict(dict(
        kind="milnce", negatives="xy", num_negatives=0, margin=0.1, negative_scope="global",
        temperature=0.0))
    config.data.update(vocab_path=str(dict_path), num_frames=32, fps=10.0, crop_size=224,
                       eval_crop_size=224, max_words=16)
    config.model_init = str(weights_path)
    return config


def _release_variables(weights_path, dict_path, pool_padding="pytorch_port"):
    from vtlearn.models import milnce_release

    _, variables = milnce_release.load_release(weights_path, dict_path, pool_padding)
    return ({"video": variables["video"]["params"], "text": variables["text"]["params"]},
            {"video": variables["video"]["batch_stats"]})


def load_milnce_release(weights_path: str | Path, dict_path: str | Path,
                        pool_padding: str = "pytorch_port") -> Model:
    """The public MIL-NCE S3D weights (`s3d_howto100m.pth`, `s3d_dict.npy`) as a `Model`.

    `embed_video` takes clips in [0, 1] (or uint8) as the release does;
    `embed_text` tokenises as the release does. Needs torch
    (`pip install 'vtlearn[milnce_release]'`).
    """
    from vtlearn.methods import get_method

    config = release_config(weights_path, dict_path, pool_padding)
    mesh = sharding.make_mesh()
    params, model_state = jax.device_put(_release_variables(weights_path, dict_path,
                                                            pool_padding),
                                         sharding.replicated(mesh))
    return Model(config, get_method("milnce")(config, mesh.size), params, model_state,
                 Vocabulary.load(dict_path), mesh, 0)


def load_pretrained(source: str, config: ml_collections.ConfigDict) -> tuple[Any, Any]:
    """(params, model state) for `config.model_init`: a run's workdir or the release.

    Args:
      source: a vtlearn workdir (its latest checkpoint), or the MIL-NCE
        release's `.pth` file, whose word list must be the run's vocabulary
        (`config.data.vocab_path=.../s3d_dict.npy`).
      config: the new run's resolved config.

    Raises:
      ValueError: naming `config.model_init` when the source's vocabulary
        differs from the run's (word ids would point at other words).
    """
    vocab = Vocabulary.load(config.data.vocab_path)
    if str(source).endswith(".pth"):
        if not str(config.data.vocab_path).endswith(".npy"):
            raise ValueError(f"config.model_init={source!r} is the MIL-NCE release: set "
                             "config.data.vocab_path to its s3d_dict.npy (its word ids)")
        return _release_variables(source, config.data.vocab_path,
                                  config.model.video.pool_padding)
    model = load(source)
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
