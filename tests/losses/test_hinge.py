"""Hessel et al.'s eq. 1 with mixed negatives, against a NumPy loop."""

import jax
import numpy as np
import pytest

from vtlearn.losses.hinge import mixed_negative_hinge_loss


def reference(s, video, valid, margin, weight):
    """Loop over positives i: ½ mean over same-video, ½ over other-video negatives."""
    per_positive = []
    for i in range(len(s)):
        if not valid[i]:
            continue
        losses = {True: [], False: []}
        for j in range(len(s)):
            if j == i or not valid[j]:
                continue
            pair = max(0, margin + s[i, j] - s[i, i]) + max(0, margin + s[j, i] - s[i, i])
            losses[bool(video[j] == video[i])].append(pair)
        same, other = losses[True], losses[False]
        if same and other:
            per_positive.append(weight * np.mean(same) + (1 - weight) * np.mean(other))
        elif same or other:
            per_positive.append(np.mean(same or other))
    return np.mean(per_positive) if per_positive else 0.0


@pytest.mark.parametrize("weight", [0.5, 0.25])
def test_mixed_negative_hinge_matches_the_loop(weight):
    rng = np.random.default_rng(0)
    video = np.repeat(np.arange(4), 3)
    valid = rng.random(12) > 0.2
    valid[[0, 3]] = True
    valid[[1, 2]] = False  # video 0 has one valid pair: other-video negatives only
    s = rng.uniform(-1, 1, (12, 12)).astype(np.float32)
    got = mixed_negative_hinge_loss(s, video, valid, margin=0.1, same_video_weight=weight)
    np.testing.assert_allclose(got, reference(s, video, valid, 0.1, weight), rtol=1e-5)
    # The gradient is finite and matches finite differences on one entry.
    grad = jax.grad(lambda x: mixed_negative_hinge_loss(x, video, valid, 0.1, weight))(s)
    bump = np.zeros_like(s)
    bump[3, 4] = 1e-3
    fd = (reference(s + bump, video, valid, 0.1, weight)
          - reference(s - bump, video, valid, 0.1, weight)) / 2e-3
    np.testing.assert_allclose(grad[3, 4], fd, atol=1e-3)


def test_no_negative_gives_zero():
    s = np.eye(3, dtype=np.float32)
    valid = np.array([True, False, False])
    assert float(mixed_negative_hinge_loss(s, np.zeros(3, int), valid)) == 0
