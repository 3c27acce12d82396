"""Tokenizer/vocabulary rules, and the TensorFlow version agreeing with NumPy."""

import numpy as np
import pytest
import tensorflow as tf

from vtlearn.data.text import Vocabulary, tokenize
from vtlearn.models.milnce_release import release_vocabulary


def test_tokenize_rules():
    assert tokenize("Don't CUT the Onion, ok?! 2x") == ["don't", "cut", "the", "onion", "ok", "2x"]


def test_encode_drops_oov_truncates_and_pads():
    vocab = Vocabulary(["cut", "the", "onion"])
    np.testing.assert_array_equal(vocab.encode("CUT zzz the onion", 2), [1, 2])
    np.testing.assert_array_equal(vocab.encode("zzz onion", 4), [3, 0, 0, 0])
    np.testing.assert_array_equal(vocab.encode("", 3), [0, 0, 0])
    assert len(vocab) == 4 and vocab.decode([3, 1, 0]) == "onion cut"


def test_tf_encode_matches_numpy():
    rng = np.random.default_rng(0)
    words = ["cut", "the", "onion", "don't", "café", "x_y", "2x"]
    vocab = Vocabulary(words)
    pool = words + ["ZZZ", "Cut", "CAFÉ", ",", "!!", "  ", "don", "t", "é"]
    texts = ["".join(rng.choice(pool) + rng.choice([" ", "", ", ", "-"])
                     for _ in range(rng.integers(0, 25))) for _ in range(200)]
    got = Vocabulary.tf_encode(vocab.tf_lookup_table(), tf.constant(texts), 16).numpy()
    np.testing.assert_array_equal(got, vocab.encode_batch(texts, 16))


def test_build_save_load(tmp_path):
    vocab = Vocabulary.build(["b a a", "c a b"], min_count=2)
    assert vocab.words == ("a", "b")
    vocab.save(tmp_path / "v.txt")
    assert Vocabulary.load(tmp_path / "v.txt").words == ("a", "b")
    with pytest.raises(ValueError, match="duplicate"):
        Vocabulary(["a", "A"])


@pytest.mark.parametrize("dtype", [str, object])
def test_load_release_word_list(tmp_path, dtype):
    words = ["cut", "the", "Onion", "cut", "door"]
    path = tmp_path / "s3d_dict.npy"
    np.save(path, np.array(words, dtype=dtype), allow_pickle=dtype is object)
    vocab, release = Vocabulary.load(path), release_vocabulary(words, rows=len(words) + 1)
    assert vocab.words == release.words
    text = "Cut the onion, open the door"
    np.testing.assert_array_equal(vocab.encode(text, 6), release.encode(text, 6))
    np.testing.assert_array_equal(vocab.encode(text, 6), [4, 2, 2, 5, 0, 0])
