"""The interface every training sampler implements."""

from __future__ import annotations

import abc

import ml_collections
import numpy as np
import tensorflow as tf

from vtlearn.data import clips

Spec = dict[str, tuple[tuple[int, ...], np.dtype]]


class Sampler(abc.ABC):
    """One parsed chunk record -> one training sample (tf.data graph code).

    Args:
      cfg: the data config (`vtlearn.data.pipeline.default_config`).
    """

    def __init__(self, cfg: ml_collections.ConfigDict):
        self.cfg = cfg

    @property
    @abc.abstractmethod
    def clips_per_sample(self) -> int:
        """Clips the towers see per sample (throughput counts B times this)."""

    @abc.abstractmethod
    def output_spec(self) -> Spec:
        """Per-sample (shape, dtype) of every key `sample` returns."""

    host_keys: tuple[str, ...] = ()
    """Keys of `output_spec` that stay on the host (e.g. ground truth for figures):
    batches carry them, the devices and the model never see them."""

    @abc.abstractmethod
    def sample(self, ex: dict[str, tf.Tensor], text_ids: tf.Tensor, usable: tf.Tensor,
               seed: tf.Tensor) -> dict[str, tf.Tensor]:
        """The sample of one record that has at least one usable caption.

        Args:
          ex: the parsed record (`vtlearn.data.records.parse_example`).
          text_ids: int32 [N, L] token ids of the record's N captions.
          usable: bool [N] captions that can anchor a clip
            (`vtlearn.data.clips.usable_captions`).
          seed: int64 [2] stateless seed of this sample.

        Returns:
          Tensors with the shapes and dtypes of `output_spec`.
        """

    def empty(self) -> dict[str, tf.Tensor]:
        """Zeros shaped like a sample (stands in for records that yield none)."""
        return {k: tf.zeros(shape, tf.as_dtype(dtype))
                for k, (shape, dtype) in self.output_spec().items()}


class PairsSampler(Sampler):
    """A sampler of `num_pairs` clip-text pairs per sample, padded pairs masked.

    Sample: the clip modalities with a leading n (`clips.modality_spec`),
    text [n, L], text_mask [n].
    """

    @property
    def clips_per_sample(self) -> int:
        return self.cfg.num_pairs

    def output_spec(self) -> Spec:
        n = self.cfg.num_pairs
        return clips.modality_spec(self.cfg, (n,)) | {
            "text": ((n, self.cfg.max_words), np.dtype(np.int32)),
            "text_mask": ((n,), np.dtype(bool))}
