"""Word2vec tables (e.g. GoogleNews, d=300) aligned to a `Vocabulary`.

Reading uses gensim (optional extra `word2vec`: `pip install gensim`). Files
are in the original word2vec format: binary ("N D\\n", then per word the word
bytes, a space, D little-endian float32, optionally a newline) or text.

Vocabulary rules, matching `vtlearn.data.text`: words are lowercased; when a
file holds several casings of a word ("Apple", "apple"), the first one in the
file wins (GoogleNews is sorted by frequency, so the commonest casing); row 0
of every table is the padding vector, all zeros.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from vtlearn import fs
from vtlearn.data.text import Vocabulary

OovInit = Literal["normal", "zeros"]


def read_word2vec(path: str | Path, binary: bool = True,
                  limit: int | None = None) -> tuple[list[str], np.ndarray]:
    """Reads a word2vec file as-is.

    Args:
        path: the file (any filesystem, `vtlearn.fs`).
        binary: binary (True) or text format.
        limit: read only the first `limit` words (GoogleNews has 3M; the first
            ones are the most frequent).

    Returns:
        words in file order, and float32 [N, D] vectors.
    """
    try:
        from gensim.models import KeyedVectors
    except ImportError as e:
        raise ImportError("reading word2vec needs gensim: pip install 'vtlearn[word2vec]'") from e
    with fs.local_copy(path) as local:
        vectors = KeyedVectors.load_word2vec_format(local, binary=binary, limit=limit)
    return list(vectors.index_to_key), np.asarray(vectors.vectors, np.float32)


def first_casing_index(words: list[str]) -> dict[str, int]:
    """Maps each lowercased word to the index of its first casing in `words`."""
    index: dict[str, int] = {}
    for i, word in enumerate(words):
        index.setdefault(word.lower(), i)
    return index


def embedding_matrix(vocab: Vocabulary, words: list[str], vectors: np.ndarray,
                     oov: OovInit = "normal", seed: int = 0) -> np.ndarray:
    """Builds the embedding table of an existing vocabulary.

    Args:
        vocab: the vocabulary; row `i + 1` is `vocab.words[i]`.
        words: word2vec words in file order (see `read_word2vec`).
        vectors: [N, D] word2vec vectors.
        oov: rows for vocabulary words missing from word2vec: "normal" draws
            each entry from N(0, s²), s = std of all word2vec entries, so
            missing words stay distinguishable under a frozen table; "zeros"
            makes them equal to padding.
        seed: seed for the "normal" rows.

    Returns:
        float32 [len(vocab), D]; row 0 (padding) is zeros.
    """
    index = first_casing_index(words)
    table = np.zeros([len(vocab), vectors.shape[1]], np.float32)
    rows = [(row, index.get(word)) for row, word in enumerate(vocab.words, start=1)]
    found = [(row, i) for row, i in rows if i is not None]
    if found:
        table[[r for r, _ in found]] = vectors[[i for _, i in found]]
    missing = [row for row, i in rows if i is None]
    if oov == "normal" and missing:
        rng = np.random.default_rng(seed)
        table[missing] = rng.normal(0.0, float(vectors.std()), [len(missing), vectors.shape[1]])
    return table


def load_word2vec(path: str | Path, vocab: Vocabulary | None = None, binary: bool = True,
                  limit: int | None = None, oov: OovInit = "normal",
                  seed: int = 0) -> tuple[Vocabulary, np.ndarray]:
    """Loads word2vec as a (vocabulary, embedding table) pair.

    Args:
        path: word2vec file, e.g. GoogleNews-vectors-negative300.bin.
        vocab: align the table to this vocabulary; None builds the vocabulary
            from the file (lowercased, first casing wins, file order).
        binary: binary (True) or text format.
        limit: read only the first `limit` words of the file.
        oov, seed: see `embedding_matrix` (only used with `vocab`).

    Returns:
        The vocabulary and float32 [len(vocab), D] with row 0 = padding zeros,
        ready for `text.with_word_embeddings`.
    """
    words, vectors = read_word2vec(path, binary=binary, limit=limit)
    if vocab is None:
        vocab = Vocabulary(list(first_casing_index(words)))
    return vocab, embedding_matrix(vocab, words, vectors, oov=oov, seed=seed)


def with_configured_vectors(params: dict, config) -> dict:
    """`params` whose `params["text"]` word table is read from
    `config.model.text.word2vec_path` for the words of `config.data.vocab_path`
    (unchanged if no path is set)."""
    path = config.model.text.word2vec_path
    if not path:
        return params
    from vtlearn.models import text as text_models

    _, table = load_word2vec(path, Vocabulary.load(config.data.vocab_path))
    return {**params, "text": text_models.with_word_embeddings(params["text"], table)}
