"""Text tokenisation and vocabulary, shared by every method.

Rules (as in the MIL-NCE release): lowercase, words are maximal runs of
`[\\w']+`, out-of-vocabulary words are dropped, at most `max_words` ids are kept,
and id 0 is padding. Word ids are 1-based: word `vocab.words[i]` has id `i + 1`.

The same rules run in two places: `Vocabulary.encode` (NumPy, for tools and
tests) and `Vocabulary.tf_encode` (TensorFlow, inside the tf.data pipeline). A
test checks they agree.
"""

from __future__ import annotations

import collections
import os
import re
from collections.abc import Iterable, Sequence

import numpy as np

from vtlearn import fs

WORD_PATTERN = r"[\w']+"
PAD_ID = 0
_WORD_RE = re.compile(WORD_PATTERN)


def tokenize(text: str) -> list[str]:
    """Lowercases `text` and splits it into words matching `[\\w']+`."""
    return _WORD_RE.findall(text.lower())


class Vocabulary:
    """An ordered word list; word `words[i]` has id `i + 1`, 0 is padding.

    Args:
        words: distinct words. Words are stored lowercased.
    """

    def __init__(self, words: Sequence[str]):
        self.words: tuple[str, ...] = tuple(w.lower() for w in words)
        self._ids = {w: i + 1 for i, w in enumerate(self.words)}
        if len(self._ids) != len(self.words):
            dup = [w for w, c in collections.Counter(self.words).items() if c > 1]
            raise ValueError(f"Vocabulary has duplicate words, e.g. {dup[:5]}")

    def __len__(self) -> int:
        """Number of ids including padding (= embedding table rows)."""
        return len(self.words) + 1

    def __contains__(self, word: str) -> bool:
        return word in self._ids

    def id(self, word: str) -> int:
        """The id of `word`, or PAD_ID when it is out of vocabulary."""
        return self._ids.get(word.lower(), PAD_ID)

    def encode(self, text: str, max_words: int) -> np.ndarray:
        """Token ids of `text`, OOV dropped, truncated and zero-padded.

        Returns:
            int32 [max_words].
        """
        ids = [i for i in (self._ids.get(w, PAD_ID) for w in tokenize(text)) if i]
        out = np.zeros([max_words], np.int32)
        out[: min(len(ids), max_words)] = ids[:max_words]
        return out

    def encode_batch(self, texts: Iterable[str], max_words: int) -> np.ndarray:
        """Encodes several texts. Returns int32 [N, max_words]."""
        rows = [self.encode(t, max_words) for t in texts]
        return np.stack(rows) if rows else np.zeros([0, max_words], np.int32)

    def decode(self, ids: Iterable[int]) -> str:
        """Words of the non-padding ids, space separated."""
        return " ".join(self.words[i - 1] for i in ids if i != PAD_ID)

    def tf_lookup_table(self):
        """A `tf.lookup.StaticHashTable` word -> id (default PAD_ID)."""
        import tensorflow as tf

        keys = list(self.words) or [""]
        values = list(range(1, len(self.words) + 1)) or [PAD_ID]
        init = tf.lookup.KeyValueTensorInitializer(
            tf.constant(keys, tf.string), tf.constant(values, tf.int32))
        return tf.lookup.StaticHashTable(init, default_value=PAD_ID)

    @staticmethod
    def tf_encode(table, texts, max_words: int):
        """TensorFlow version of `encode` for a 1-D string tensor.

        Args:
            table: from `tf_lookup_table()`.
            texts: tf.string [N].
            max_words: L.

        Returns:
            tf.int32 [N, L].
        """
        import tensorflow as tf

        words = tf.strings.lower(texts, encoding="utf-8")
        words = tf.strings.regex_replace(words, r"[^\pL\pN_']+", " ")
        words = tf.strings.split(words)  # ragged [N, None]
        ids = tf.ragged.map_flat_values(table.lookup, words)
        ids = tf.ragged.boolean_mask(ids, ids != PAD_ID)[:, :max_words]
        return ids.to_tensor(default_value=PAD_ID, shape=[None, max_words])

    @classmethod
    def build(cls, texts: Iterable[str], min_count: int = 1,
              max_size: int | None = None) -> Vocabulary:
        """Builds a vocabulary from a corpus, most frequent words first."""
        counts = collections.Counter(w for t in texts for w in tokenize(t))
        ranked = sorted((w for w, c in counts.items() if c >= min_count),
                                        key=lambda w: (-counts[w], w))
        return cls(ranked[:max_size])

    def save(self, path: str | os.PathLike) -> None:
        """Writes one word per line (line i holds id i + 1)."""
        fs.write_text(path, "".join(w + "\n" for w in self.words))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Vocabulary:
        """Reads a file written by `save` (one word per line) or a release word list.

        A path ending in `.npy` is read as the MIL-NCE release's word list
        (`s3d_dict.npy`): word `i` of the array has id `i + 1`, as in the
        release, and words the release can never match (capitalised words,
        earlier copies of a repeated word) keep their id but match no text;
        see `vtlearn.models.milnce_release.release_vocabulary`.
        """
        if os.fspath(path).endswith(".npy"):
            # Lazy: the data layer does not import model code at import time.
            from vtlearn.models.milnce_release import load_word_list, release_vocabulary

            words = load_word_list(path)
            return release_vocabulary(words, rows=len(words) + 1)
        text = fs.read_text(path)
        return cls([w for w in text.split("\n") if w])
