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


def test_figure_has_scales_labels_frames_ground_truth_and_chatter(tmp_path):
    matrices = alignment_view.alignment_matrices(*_video(), distance="cosine")
    captions = ["crack the eggs", "whisk", "like and subscribe", "pour into the pan", "flip"]
    frames = np.stack([np.full((24, 32, 3), 40 * i, np.uint8) for i in range(5)])
    clip_step = np.array([0, 1, 5, 3, 4])  # clip 2 shows a step no caption narrates
    caption_step = np.array([0, 1, -1, 3, 4])  # caption 2 is chatter
    truth = alignment_view.ground_truth(clip_step, caption_step)
    np.testing.assert_array_equal(truth, np.diag([1, 1, 0, 1, 1]).astype(bool))
    fig = alignment_view.alignment_figure(matrices, captions_text=captions, frames=frames,
                                          truth=truth, relevant=caption_step >= 0)
    panels = [ax for ax in fig.axes if ax.get_title() in alignment_view.PANEL_TITLES]
    assert [ax.get_title() for ax in panels] == list(alignment_view.PANEL_TITLES)
    bars = [ax.get_ylabel() for ax in fig.axes if ax not in panels and ax.get_ylabel()]
    assert bars == ["distance δ(clip, caption)", "soft-DTW weight", "S2DTW weight"]
    for ax in panels:
        assert ax.get_xlabel() == "caption" and ax.get_ylabel().startswith("clip")
        np.testing.assert_allclose(ax.get_images()[0].get_array(),
                                   matrices[alignment_view.MATRIX_KEYS[panels.index(ax)]])
        assert len(ax.patches) == 4  # the ground-truth boxes
        colours = [t.get_color() for t in ax.get_xticklabels()]
        assert colours == ["black", "black", "red", "black", "black"]
        assert len(ax.texts) == 25  # every cell's value
    strip = next(ax for ax in fig.axes if ax.get_title() == "frames")
    assert len(strip.get_images()) == 5
    legend = [t.get_text() for t in fig.texts]
    assert any("ground truth" in t for t in legend)
    assert any(t.startswith("3: like and subscribe") and "S2DTW 0.00" in t for t in legend)
    size = alignment_view.render_alignment_png(matrices, tmp_path / "a.png",
                                               captions_text=captions, frames=frames,
                                               truth=truth, relevant=caption_step >= 0)
    image = Image.open(tmp_path / "a.png")
    assert image.size == size and size[0] > 800 and size[1] > 400
    bare = alignment_view.render_alignment_png(matrices, tmp_path / "bare.png")
    assert Image.open(tmp_path / "bare.png").size == bare
    with pytest.raises(ValueError, match="truth must have shape"):
        alignment_view.alignment_figure(matrices, truth=truth[:4])


def test_view_of_a_run_without_checkpoints_fails_clearly(tmp_path):
    from vtlearn.checkpointing import NoCheckpointError

    workdir = tmp_path / "run"
    with pytest.raises(NoCheckpointError, match="No checkpoint in .*run"):
        alignment_view.write_alignment_view(workdir, tmp_path / "alignment.png")
    assert not workdir.exists()
