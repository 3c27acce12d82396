"""The VT-TWINS alignment view (Ko et al., CVPR 2022, §5.2.2 and Fig. 5).

For one video's clip embeddings X [n, D] and caption embeddings Y [m, D] it
shows, side by side,

* the pairwise distance matrix Δ = [δ(x_i, y_j)] [n, m],
* the soft-DTW path M = ∂softDTW(Δ)/∂Δ (eq. 4): the expected alignment, in
  which every caption (column) and every clip (row) carries a total weight of
  at least 1, because every monotone path from (1, 1) to (n, m) visits them,
* the S2DTW path M̂ = ∂S2DTW(Δ)/∂Δ (eqs. 5–6 with dummies, §4.2), taken
  w.r.t. the original n×m Δ through the local smoothing and the dummy
  insertion (μ̂ of eq. 10): pairs the path passes through dummies instead of
  get (almost) no weight, so a skipped caption shows as an empty column.

Because the smoothing (eq. 5) also routes δ_{i,j} into the smoothed costs of
its three successors, entries of M̂ can exceed 1 (a cell whose distance is
the soft minimum of its successors' neighbourhoods counts up to four times).

How strongly S2DTW skips depends on the scale of Δ against the dummy cost φ.
With "cosine" distances (1 − cos ∈ [0, 2]) matched pairs cost ≈ 0, unrelated
ones ≈ 1, and φ = 0.5 separates them. With the release's "neg_dot" (−cos ∈
[−1, 1]) the smoothing lowers every cell next to a good match by about that
match's distance (≈ −1), so a caption right after a well-matched one is
usually kept even if it is unrelated to every clip.

As an evaluator (`config.evals.<name>.type = "alignment_view"`, see
`Evaluator`) it writes the PNG of every evaluation step into the workdir.
From the command line, for any saved run (its latest checkpoint)::

  python -m vtlearn.evaluation.alignment_view --workdir=/tmp/vttwins \
    --out=alignment.png [--index=0] [--step=N]

The video is a deterministic sample of the evaluation records
(`config.data.eval_files`, e.g. the lab's test split): the "sequence"
sampler (n consecutive captions with their clips) runs over them with a
fixed seed, no flips and crops of `data.eval_crop_size`; `index` picks the
sample within that first batch. Padded pairs (`text_mask`) are dropped
before the matrices are computed. Any method works: clips and captions are
embedded with its `embed_video` and `embed_text`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vtlearn.alignment.s2dtw import DEFAULT_GAMMA, DEFAULT_PHI, SmoothingOrigin
from vtlearn.alignment.s2dtw import s2dtw_from_distances
from vtlearn.alignment.soft_dtw import Distance, expected_alignment, l2_normalize
from vtlearn.alignment.soft_dtw import pairwise_distance
from vtlearn.evaluation import base

MATRIX_KEYS = ("distance", "soft_dtw", "s2dtw")
PANEL_TITLES = ("distance", "soft-DTW path M", "S2DTW path M-hat")
SAMPLE_SEED = 0  # data.seed of the deterministic evaluation sample.

# Image layout, in pixels (see `panel_layout`).
MARGIN = 8
TITLE_HEIGHT = 16
AXIS_BAND = 18  # Row numbers left of each heat map, column numbers below it.
PANEL_GAP = 12
LINE_HEIGHT = 14
MIN_MAP_WIDTH = 112  # Room for a title above narrow heat maps.

_LIGHT = np.array([255.0, 255.0, 255.0])
_DARK = np.array([8.0, 48.0, 107.0])
_TEXT = (0, 0, 0)
_FRAME = (160, 160, 160)
_FONT_SIZE = 11


@functools.partial(
    jax.jit,
    static_argnames=("gamma", "smoothing_gamma", "phi", "distance", "normalize",
                     "smoothing_origin"),
)
def _matrices(clips, captions, *, gamma, smoothing_gamma, phi, distance, normalize,
              smoothing_origin):
    if normalize:
        clips, captions = l2_normalize(clips), l2_normalize(captions)
    delta = pairwise_distance(clips, captions, distance)
    soft = expected_alignment(delta, gamma)
    s2dtw = jax.grad(
        lambda d: s2dtw_from_distances(d, gamma=gamma, smoothing_gamma=smoothing_gamma, phi=phi,
                                       smoothing_origin=smoothing_origin)
    )(delta)
    return delta, soft, s2dtw


def alignment_matrices(
    clips: np.ndarray | jax.Array,
    captions: np.ndarray | jax.Array,
    *,
    gamma: float = DEFAULT_GAMMA,
    phi: float = DEFAULT_PHI,
    distance: Distance = "neg_dot",
    smoothing_gamma: float | None = None,
    smoothing_origin: SmoothingOrigin = "paper",
    normalize: bool = True,
) -> dict[str, np.ndarray]:
    """Fig. 5's matrices Δ, M and M̂ for one clip sequence and one caption sequence.

    Args:
      clips: [n, D] clip embeddings X (valid clips only).
      captions: [m, D] caption embeddings Y (valid captions only).
      gamma: γ of the soft-DTW and S2DTW recursions (eqs. 4 and 6).
      phi: Dummy distance δ^φ of the weak alignment.
      distance: Element distance; see `vtlearn.alignment.pairwise_distance`.
      smoothing_gamma: γ of the smoothing (eq. 5); defaults to `gamma`.
      smoothing_origin: "paper" or "release" boundary of eq. 5; see
        `vtlearn.alignment.s2dtw.local_neighborhood_smoothing`.
      normalize: L2-normalise the embeddings first (as the VT-TWINS loss does).

    Returns:
      float32 NumPy arrays, each [n, m]: "distance" Δ, "soft_dtw" M =
      ∂softDTW(Δ)/∂Δ (alignment probabilities in [0, 1]) and "s2dtw" M̂ =
      ∂S2DTW(Δ)/∂Δ (non-negative; may exceed 1, see the module docstring).
    """
    clips, captions = jnp.asarray(clips, jnp.float32), jnp.asarray(captions, jnp.float32)
    if clips.ndim != 2 or captions.ndim != 2 or clips.shape[1] != captions.shape[1]:
        raise ValueError(f"need clips [n, D] and captions [m, D], got {clips.shape} "
                         f"and {captions.shape}")
    if not (clips.shape[0] and captions.shape[0]):
        raise ValueError("need at least one clip and one caption")
    arrays = _matrices(clips, captions, gamma=float(gamma), smoothing_gamma=smoothing_gamma,
                       phi=float(phi), distance=distance, normalize=normalize,
                       smoothing_origin=smoothing_origin)
    return {k: np.asarray(v, np.float32) for k, v in zip(MATRIX_KEYS, arrays)}


@dataclasses.dataclass(frozen=True)
class PanelLayout:
    """Where `render_alignment_png` draws.

    Attributes:
      size: (width, height) of the image.
      heat_maps: per panel (Δ, M, M̂), the (left, top, right, bottom) box of
        its heat map; cell (i, j) fills the `cell`-pixel square at
        (left + j·cell, top + i·cell).
      legend_top: y of the first text line under the panels.
    """

    size: tuple[int, int]
    heat_maps: tuple[tuple[int, int, int, int], ...]
    legend_top: int


def panel_layout(n: int, m: int, cell: int, num_captions: int) -> PanelLayout:
    """Layout of three [n, m] heat maps and a legend of `num_captions` lines.

    Each panel is a title band (TITLE_HEIGHT) over the heat map
    (m·cell × n·cell, or MIN_MAP_WIDTH wide if that is more, heat map left
    aligned), with an AXIS_BAND of row numbers to its left and one of column
    numbers below it. Panels are PANEL_GAP apart; under them come one note
    line and one line per caption (LINE_HEIGHT each); MARGIN all round.

    Args:
      n: Rows (clips).
      m: Columns (captions).
      cell: Pixels per matrix entry.
      num_captions: Legend lines (0 without caption texts).

    Returns:
      The layout.
    """
    slot = AXIS_BAND + max(m * cell, MIN_MAP_WIDTH)
    top = MARGIN + TITLE_HEIGHT
    boxes = []
    for k in range(len(MATRIX_KEYS)):
        left = MARGIN + k * (slot + PANEL_GAP) + AXIS_BAND
        boxes.append((left, top, left + m * cell, top + n * cell))
    legend_top = top + n * cell + AXIS_BAND
    width = 2 * MARGIN + len(MATRIX_KEYS) * slot + (len(MATRIX_KEYS) - 1) * PANEL_GAP
    height = legend_top + (1 + num_captions) * LINE_HEIGHT + MARGIN
    return PanelLayout((width, height), tuple(boxes), legend_top)


def _heat_map(matrix: np.ndarray, cell: int) -> Image.Image:
    """White (panel minimum) to dark blue (panel maximum), `cell` pixels per entry."""
    low, high = float(matrix.min()), float(matrix.max())
    scaled = (matrix - low) / (high - low) if high > low else np.zeros_like(matrix)
    colours = _LIGHT + scaled[..., None] * (_DARK - _LIGHT)
    image = Image.fromarray(np.rint(colours).astype(np.uint8), "RGB")
    return image.resize((matrix.shape[1] * cell, matrix.shape[0] * cell), Image.NEAREST)


def _fit(draw: ImageDraw.ImageDraw, text: str, font, width: float) -> str:
    """`text`, shortened with "..." to at most `width` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


def render_alignment_png(
    matrices: dict[str, np.ndarray],
    path: str | os.PathLike,
    captions_text: Sequence[str] | None = None,
    cell: int = 24,
) -> tuple[int, int]:
    """Writes Δ, M and M̂ as three heat maps side by side to a PNG.

    Each panel is normalised on its own (white = its minimum, dark blue = its
    maximum; for Δ dark means far). Rows are clips, columns captions, both
    numbered from 1. With `captions_text`, a legend lists every caption with
    its column's total weight under soft-DTW and S2DTW (a skipped caption
    has a small S2DTW weight).

    Args:
      matrices: "distance", "soft_dtw" and "s2dtw" arrays, each [n, m] (as
        returned by `alignment_matrices`).
      path: Output PNG file.
      captions_text: Optional m caption strings.
      cell: Pixels per matrix entry.

    Returns:
      (width, height) of the image, as given by `panel_layout`.
    """
    panels = [np.asarray(matrices[k], np.float32) for k in MATRIX_KEYS]
    n, m = panels[0].shape
    if any(p.shape != (n, m) for p in panels):
        raise ValueError(f"matrices must share one [n, m] shape, got "
                         f"{[p.shape for p in panels]}")
    if not all(np.all(np.isfinite(p)) for p in panels):
        raise ValueError("matrices have non-finite entries")
    if captions_text is not None and len(captions_text) != m:
        raise ValueError(f"got {len(captions_text)} caption texts for {m} captions")
    if cell < 1:
        raise ValueError(f"cell must be a positive number of pixels, got {cell}")
    layout = panel_layout(n, m, cell, 0 if captions_text is None else m)
    image = Image.new("RGB", layout.size, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=_FONT_SIZE)
    label_every = math.ceil(LINE_HEIGHT / cell)
    for matrix, title, (left, top, right, bottom) in zip(panels, PANEL_TITLES,
                                                          layout.heat_maps):
        map_width = max(right - left, MIN_MAP_WIDTH)
        draw.text((left, MARGIN), _fit(draw, title, font, map_width), fill=_TEXT, font=font)
        image.paste(_heat_map(matrix, cell), (left, top))
        draw.rectangle((left - 1, top - 1, right, bottom), outline=_FRAME)
        for i in range(0, n, label_every):
            label = str(i + 1)
            x = left - 3 - draw.textlength(label, font=font)
            draw.text((x, top + i * cell + (cell - LINE_HEIGHT) / 2), label, fill=_TEXT,
                      font=font)
        for j in range(0, m, label_every):
            label = str(j + 1)
            x = left + j * cell + (cell - draw.textlength(label, font=font)) / 2
            draw.text((x, bottom + 2), label, fill=_TEXT, font=font)
    text_width = layout.size[0] - 2 * MARGIN
    note = "rows: clips, columns: captions; dark = large (each panel scaled on its own)"
    draw.text((MARGIN, layout.legend_top), _fit(draw, note, font, text_width), fill=_TEXT,
              font=font)
    if captions_text is not None:
        soft_weight, s2dtw_weight = panels[1].sum(0), panels[2].sum(0)
        for j, caption in enumerate(captions_text):
            weights = f"  [soft-DTW {soft_weight[j]:.2f}, S2DTW {s2dtw_weight[j]:.2f}]"
            room = text_width - draw.textlength(f"{j + 1}: " + weights, font=font)
            line = f"{j + 1}: {_fit(draw, caption, font, room)}{weights}"
            draw.text((MARGIN, layout.legend_top + (j + 1) * LINE_HEIGHT), line, fill=_TEXT,
                      font=font)
    image.save(path, format="PNG")
    return layout.size


def evaluation_sequences(data_config: ml_collections.ConfigDict, files: str, num_pairs: int,
                         batch_size: int) -> dict[str, np.ndarray]:
    """A deterministic batch of sequence samples from the records `files`.

    Runs the "sequence" sampler (n consecutive captions with their clips)
    over `files` with data.seed = SAMPLE_SEED, no flips and crops of
    `eval_crop_size`, so the same settings always give the same batch,
    whatever sampler the run trained with.

    Args:
      data_config: A resolved data config.
      files: Record pattern.
      num_pairs: n.
      batch_size: Samples B.

    Returns:
      The first batch: video [B, n, T, H, W, 3] (or features [B, n, D]),
      text [B, n, L], text_mask [B, n], label [B], index [B] (see
      `vtlearn.data.pipeline`).
    """
    from vtlearn.data import pipeline

    cfg = ml_collections.ConfigDict(data_config.to_dict())
    cfg.update(sampler="sequence", num_pairs=num_pairs, train_files=files, seed=SAMPLE_SEED,
               flip=False, crop_size=cfg.eval_crop_size)
    return next(pipeline.iterate_train(cfg, batch_size))


def default_config() -> ml_collections.ConfigDict:
    """Keys of an alignment-view section (besides `type` and `every`).

    A VT-TWINS config links gamma, phi, distance and the smoothing settings
    to its `config.loss`, so the view shows the alignment the loss uses.
    """
    return ml_collections.ConfigDict(dict(
        files="",        # "" = config.data.eval_files
        index=0,         # which sample of the deterministic batch is shown
        num_pairs=0,     # n; 0 = config.data.num_pairs
        gamma=DEFAULT_GAMMA, phi=DEFAULT_PHI, distance="neg_dot", smoothing_gamma=0.0,
        smoothing_origin="paper",
    ))


class Evaluator(base.Evaluator):
    """Writes one video's Δ, M and M̂ as `artefacts/<name>/step_<N>_alignment.png`.

    Metrics: "skipped_captions" and "skipped_clips", the captions (columns)
    and clips (rows) to which S2DTW gives a total weight below 0.5 (soft-DTW
    gives each at least 1).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        s = self.settings
        if s.index < 0:
            raise ValueError(f"config.evals.{self.name}.index must be >= 0, got {s.index}")
        self.pattern = self.files("files", "eval_files")
        self.num_pairs = s.num_pairs or self.config.data.num_pairs

    def alignment(self, variables) -> tuple[dict[str, np.ndarray], list[str]]:
        """The matrices of `alignment_matrices` and the shown captions' texts."""
        from vtlearn import sharding
        from vtlearn.data.text import Vocabulary

        s, devices = self.settings, jax.device_count()
        batch = evaluation_sequences(self.config.data, self.pattern, self.num_pairs,
                                     devices * math.ceil((s.index + 1) / devices))
        sample = {k: v[s.index] for k, v in batch.items()}
        valid = int(np.sum(sample["text_mask"]))
        clip_inputs = {k: np.repeat(sample[k][None, :valid], devices, 0).reshape(
            (-1,) + sample[k].shape[1:]) for k in base.CLIP_KEYS if k in sample}
        video_fn, _ = base._jitted(self.method)
        clips = video_fn(variables.params, variables.model_state,
                         sharding.global_batch(clip_inputs, self.mesh))["embedding"]
        clips = np.asarray(sharding.to_host(clips))[:valid]
        captions = base.embed_token_ids(self.method, variables, self.mesh,
                                        sample["text"][:valid], self.batch_size)
        matrices = alignment_matrices(
            clips, captions, gamma=s.gamma, phi=s.phi, distance=s.distance,
            smoothing_gamma=s.smoothing_gamma or None, smoothing_origin=s.smoothing_origin)
        vocab = Vocabulary.load(self.config.data.vocab_path)
        return matrices, [vocab.decode(ids) for ids in sample["text"][:valid]]

    def run(self, variables, step):
        matrices, texts = self.alignment(variables)
        path = self.artefact_path(step, "alignment.png")
        if path is not None:
            render_alignment_png(matrices, path, captions_text=texts)
        return {"skipped_captions": float(np.sum(matrices["s2dtw"].sum(0) < 0.5)),
                "skipped_clips": float(np.sum(matrices["s2dtw"].sum(1) < 0.5))}


def write_alignment_view(workdir: str | os.PathLike, out: str | os.PathLike, index: int = 0,
                         step: int | None = None) -> Path:
    """Renders one evaluation video's view of a saved run to `out`.

    Uses the run's `config.evals` section of type "alignment_view" if it has
    one (else the defaults with the run's data), with `index` overriding.

    Args:
      workdir: Run directory (`vtlearn.load`).
      out: Output PNG path.
      index: Which sample of `evaluation_sequences` to show.
      step: Checkpoint step (default: the latest).

    Returns:
      The PNG's path.
    """
    import vtlearn
    from vtlearn.evaluation import standalone

    model = vtlearn.load(workdir, step=step)
    matrices, texts = standalone(model, "alignment_view", index=index).alignment(model)
    render_alignment_png(matrices, out, captions_text=texts)
    return Path(out)


def _command_line() -> None:
    """Parses the flags (defined here, so importing the module defines none) and runs."""
    from absl import app, flags, logging

    workdir = flags.DEFINE_string("workdir", None, "Run directory (vtlearn.load).")
    out = flags.DEFINE_string("out", "alignment.png", "Output PNG.")
    index = flags.DEFINE_integer("index", 0, "Sample of the evaluation batch to show.")
    step = flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).")
    flags.mark_flags_as_required(["workdir"])

    def main(argv: Sequence[str]) -> None:
        if len(argv) > 1:
            raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        logging.set_verbosity(logging.WARNING)  # Orbax logs every restore phase at INFO.
        from vtlearn.checkpointing import NoCheckpointError
        from vtlearn.data.pipeline import keep_tensorflow_on_host

        keep_tensorflow_on_host()
        try:
            path = write_alignment_view(workdir.value, out.value, index.value, step.value)
        except NoCheckpointError as e:
            sys.exit(str(e))
        print(path)

    app.run(main)


if __name__ == "__main__":
    _command_line()
