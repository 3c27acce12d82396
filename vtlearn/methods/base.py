"""The interface between a paper's method and the shared trainer/evaluator.

A method owns its models and loss; the trainer owns everything else (mesh,
input, optimizer, checkpoints, logging, evaluation loops). All functions are
traced under `jax.jit` with globally sharded batches (keys documented in
`vtlearn.data.pipeline`), so in-batch negatives are global by default.
"""

from __future__ import annotations

import abc
from typing import Any

import jax
import ml_collections
import numpy as np

Params = Any
ModelState = Any  # e.g. {"batch_stats": ...}, cluster centroids, queues


class Method(abc.ABC):
    """A paper's models + loss.

    Args:
      config: the whole run config (methods read `config.model`,
        `config.loss`, `config.data`).
      num_devices: devices of the mesh (for per-device negatives / BN groups).
    """

    def __init__(self, config: ml_collections.ConfigDict, num_devices: int):
        self.config = config
        self.num_devices = num_devices

    @abc.abstractmethod
    def init(self, rng: jax.Array, batch: dict[str, jax.Array]) -> tuple[Params, ModelState]:
        """Initial params and model state for a batch of the training spec."""

    def with_pretrained(self, params: Params) -> Params:
        """Fresh params with the method's own pretrained parts (e.g. word vectors).

        Runs on the host once, after `init`, when a run starts from scratch
        (not when it resumes or when a trained model is loaded).
        """
        return params

    def external_weights(self, path: str) -> tuple[Params, ModelState]:
        """(params, model state) read from a published weight file (`config.model_init`).

        Methods that can read such files override this; the default refuses.
        """
        raise ValueError(f"config.model_init={path!r} is not a vtlearn run directory, and "
                         f"method {self.config.method!r} reads no other weight files")

    @abc.abstractmethod
    def loss(self, params: Params, state: ModelState, batch: dict[str, jax.Array],
             rng: jax.Array, step: jax.Array
             ) -> tuple[jax.Array, tuple[ModelState, dict[str, jax.Array]]]:
        """Training loss on a global batch at training step `step` (int32 []).

        Returns:
          (scalar loss, (new model state, scalar metrics to log)).
        """

    @abc.abstractmethod
    def embed_video(self, params: Params, state: ModelState,
                    clips: dict[str, jax.Array]) -> dict[str, jax.Array]:
        """Embeds N clips (keys video/audio/features_* with leading N).

        Returns:
          {"embedding": [N, D] joint-space embedding, and optionally
           "features": [N, F] backbone features for linear probes}.
        """

    @abc.abstractmethod
    def embed_text(self, params: Params, state: ModelState, text: jax.Array) -> jax.Array:
        """Embeds N token-id sequences [N, L] -> [N, D]."""

    def similarity(self, text: np.ndarray, video: dict[str, np.ndarray]) -> np.ndarray:
        """Retrieval scores [Q, N] of text embeddings [Q, D] against N videos.

        `video` holds the (clip-averaged) outputs of `embed_video`; the
        default scores dot products with "embedding".
        """
        return np.asarray(text, np.float64) @ np.asarray(video["embedding"], np.float64).T

    def trainable(self, params: Params) -> Any:
        """Pytree of bools: False for parameters the optimizer must not change."""
        return jax.tree.map(lambda _: True, params)
