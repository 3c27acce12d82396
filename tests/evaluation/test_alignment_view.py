"""Alignment view (VT-TWINS Fig. 5): matrices on a hand-made video and the PNG.

The video has 5 clips and 5 captions: pairs 0, 1, 3 and 4 match (equal unit
vectors), clip 2 points in a direction of its own, and caption 2 points away
from every clip (−Σ clips), so it is the farthest caption from all of them.
"""

import jax
import numpy as np
import pytest
from PIL import Image

from vtlearn.alignment.s2dtw import s2dtw_from_distances
from vtlearn.alignment.soft_dtw import soft_dtw
from vtlearn.evaluation import alignment_view

MATCHED = (0, 1, 3, 4)
IRRELEVANT = 2


def _video(dim: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Clips [5, dim] and captions [5, dim] as in the module docstring."""
    eye = np.eye(dim, dtype=np.float32)
    clips = eye[:5].copy()
    clips[IRRELEVANT] = eye[dim - 1]
    captions = eye[:5].copy()
    captions[IRRELEVANT] = -clips.sum(0)
    return clips, captions


def test_paths_follow_the_diagonal_and_soft_dtw_must_visit_every_caption():
    out = alignment_view.alignment_matrices(*_video())  # Defaults: neg_dot, γ 0.1, φ 0.5.
    delta, soft, s2dtw = out["distance"], out["soft_dtw"], out["s2dtw"]
    assert all(a.shape == (5, 5) and a.dtype == np.float32 for a in out.values())
    assert np.all(delta[:, IRRELEVANT] >= delta.max(axis=1))  # Every clip's farthest caption.
    assert soft.min() >= -1e-6 and soft.max() <= 1 + 1e-6
    assert s2dtw.min() >= -1e-6
    for i in MATCHED:
        assert np.argmax(soft[i]) == i and soft[i, i] > 0.99
        assert np.argmax(s2dtw[i]) == i and s2dtw[i, i] > 0.9
    # Every monotone path from (1, 1) to (n, m) visits every column: soft-DTW
    # puts a total weight >= 1 on the irrelevant caption, half of it on one clip.
    assert soft[:, IRRELEVANT].sum() > 0.999
    assert soft[:, IRRELEVANT].max() > 0.45


def test_s2dtw_skips_the_irrelevant_caption():
    # Cosine distances: matched 0, unrelated 1, caption 2 ≈ 1.45; the dummy
    # cost φ = 0.5 lies between matched and unrelated.
    out = alignment_view.alignment_matrices(*_video(), distance="cosine", phi=0.5)
    soft, s2dtw = out["soft_dtw"], out["s2dtw"]
    assert soft[:, IRRELEVANT].sum() > 0.999
    assert soft[IRRELEVANT, IRRELEVANT] > 0.99  # Aligned to the unrelated clip 2.
    assert s2dtw[:, IRRELEVANT].sum() < 0.01  # Measured: 3e-4.
    assert s2dtw[IRRELEVANT, :].sum() < 0.02  # Clip 2 is skipped too (measured 7e-3).
    for i in MATCHED:
        assert np.argmax(soft[i]) == i and soft[i, i] > 0.99
        assert np.argmax(s2dtw[i]) == i and s2dtw[i, i] > 0.99


@pytest.mark.parametrize("cell", [(2, 1), (0, 0)])
def test_gradients_match_finite_differences_of_the_values(cell):
    gamma, phi, eps = 0.1, 0.5, 3e-3
    out = alignment_view.alignment_matrices(*_video(), gamma=gamma, phi=phi)
    delta = out["distance"]
    bump = np.zeros_like(delta)
    bump[cell] = eps
    shifted = np.stack([delta + bump, delta - bump])  # [2, n, m]
    values = jax.jit(lambda d: (soft_dtw(d, gamma), s2dtw_from_distances(d, gamma=gamma, phi=phi)))
    (soft_plus, soft_minus), (s2_plus, s2_minus) = jax.device_get(values(shifted))
    np.testing.assert_allclose(out["soft_dtw"][cell], (soft_plus - soft_minus) / (2 * eps),
                               atol=5e-3)
    np.testing.assert_allclose(out["s2dtw"][cell], (s2_plus - s2_minus) / (2 * eps), atol=5e-3)
    # Non-trivial cells: (2, 1) is half-visited by soft-DTW, and δ_{1,1} also
    # enters the smoothed costs of its successors (eq. 5), so M̂ exceeds 1 there.
    assert out["soft_dtw"][cell] > 0.4
    assert out["s2dtw"][cell] > (0.9 if cell == (2, 1) else 2.5)


def test_png_has_three_differing_panels_and_the_documented_size(tmp_path):
    matrices = alignment_view.alignment_matrices(*_video(), distance="cosine")
    captions = ["crack the eggs", "whisk", "like and subscribe", "pour into the pan", "flip"]
    path = tmp_path / "alignment.png"
    size = alignment_view.render_alignment_png(matrices, path, captions_text=captions, cell=24)
    # 3 slots of (18 + 5·24) px, 2 gaps of 12, margins 8; height: 8 + 16 title
    # + 120 map + 18 axis + 6 text lines of 14 + 8.
    assert size == (454, 254)
    image = np.asarray(Image.open(path).convert("RGB"))
    assert image.shape == (254, 454, 3)
    layout = alignment_view.panel_layout(5, 5, 24, num_captions=5)
    crops = [image[top:bottom, left:right] for left, top, right, bottom in layout.heat_maps]
    assert all(c.shape == (120, 120, 3) for c in crops)
    for a in range(3):
        for b in range(a + 1, 3):
            assert not np.array_equal(crops[a], crops[b])

    def colour(crop, i, j):
        return crop[i * 24 + 12, j * 24 + 12]

    dark, white = np.array([8, 48, 107]), np.array([255, 255, 255])
    _, soft_crop, s2dtw_crop = crops
    # Soft-DTW's darkest cells include the forced (2, 2); S2DTW leaves column 2 white.
    assert np.all(np.abs(colour(soft_crop, IRRELEVANT, IRRELEVANT) - dark) <= 2)
    for i in range(5):
        assert np.all(np.abs(colour(s2dtw_crop, i, IRRELEVANT) - white) <= 2)
    assert np.all(np.abs(colour(s2dtw_crop, 0, 0) - dark) <= 2)  # M̂'s maximum, 1.99.
    assert np.all(colour(s2dtw_crop, 3, 3) < 200)  # About half of it.

    assert alignment_view.render_alignment_png(matrices, tmp_path / "bare.png") == (454, 184)


def test_view_of_a_run_without_checkpoints_fails_clearly(tmp_path):
    from vtlearn.checkpointing import NoCheckpointError

    workdir = tmp_path / "run"
    with pytest.raises(NoCheckpointError, match="No checkpoint in .*run"):
        alignment_view.write_alignment_view(workdir, tmp_path / "alignment.png")
    assert not workdir.exists()
