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

import functools
import math
import os
import sys
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from vtlearn.alignment.s2dtw import DEFAULT_GAMMA, DEFAULT_PHI, SmoothingOrigin
from vtlearn.alignment.s2dtw import s2dtw_from_distances
from vtlearn.alignment.soft_dtw import Distance, expected_alignment, l2_normalize
from vtlearn.alignment.soft_dtw import pairwise_distance
from vtlearn.evaluation import base, figures
from vtlearn.evaluation.figures import pyplot

MATRIX_KEYS = ("distance", "soft_dtw", "s2dtw")
PANEL_TITLES = ("distance", "soft-DTW path M", "S2DTW path M-hat")
SAMPLE_SEED = 0  # data.seed of the deterministic evaluation sample.

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


def ground_truth(clip_step: np.ndarray, caption_step: np.ndarray) -> np.ndarray:
    """bool [n, m]: clip i shows the step caption j narrates (-1: none, never true)."""
    clip_step, caption_step = np.asarray(clip_step), np.asarray(caption_step)
    return (clip_step[:, None] == caption_step[None, :]) & (caption_step[None, :] >= 0)


def _aspect(frames: np.ndarray) -> float:
    """Width / height of the frames."""
    return frames.shape[2] / frames.shape[1]


def alignment_figure(
    matrices: dict[str, np.ndarray],
    captions_text: Sequence[str] | None = None,
    frames: np.ndarray | None = None,
    truth: np.ndarray | None = None,
    relevant: np.ndarray | None = None,
):
    """Fig. 5 as a matplotlib `Figure`: Δ, M and M̂ side by side.

    Each panel has its own colour bar (Δ: distance; M, M̂: alignment weight),
    clips (rows, in time order) and captions (columns) on labelled axes, the
    values written in the cells when the matrices are small, and under it a
    legend of every caption with its column's total weight under soft-DTW
    and S2DTW (a skipped caption has a small S2DTW weight).

    Args:
      matrices: "distance", "soft_dtw" and "s2dtw" arrays, each [n, m] (as
        returned by `alignment_matrices`).
      captions_text: m caption strings.
      frames: [n, H, W, 3] uint8, one frame per clip (its middle frame),
        drawn left of the rows.
      truth: bool [n, m] ground truth (`ground_truth`): outlined in every
        panel.
      relevant: bool [m], False for a caption that narrates no step
        (chatter): its column label and legend line are red.
    """
    plt = pyplot()
    panels = [np.asarray(matrices[k], np.float32) for k in MATRIX_KEYS]
    n, m = panels[0].shape
    if any(p.shape != (n, m) for p in panels):
        raise ValueError(f"matrices must share one [n, m] shape, got "
                         f"{[p.shape for p in panels]}")
    if not all(np.all(np.isfinite(p)) for p in panels):
        raise ValueError("matrices have non-finite entries")
    for name, value, shape in (("captions_text", captions_text, (m,)),
                               ("truth", truth, (n, m)), ("relevant", relevant, (m,))):
        if value is not None and np.shape(value) != shape:
            raise ValueError(f"{name} must have shape {shape}, got {np.shape(value)}")
    if frames is not None and (np.ndim(frames) != 4 or len(frames) != n):
        raise ValueError(f"frames must be [n={n}, H, W, 3], got {np.shape(frames)}")
    # The legend under the panels: what the marks mean, then one line per caption.
    notes = ["orange boxes: ground truth (the clip shows the step the caption narrates)"
             if truth is not None else "", "red: caption narrating no step (chatter)"
             if relevant is not None else ""]
    lines = [" · ".join(x for x in notes if x)] if any(notes) else []
    if captions_text is not None:
        soft_weight, s2dtw_weight = panels[1].sum(0), panels[2].sum(0)
        for j, caption in enumerate(captions_text):
            lines.append(f"{j + 1}: {caption[:70]}   [soft-DTW {soft_weight[j]:.2f}, "
                         f"S2DTW {s2dtw_weight[j]:.2f}]")
    # Layout in inches: [frames] then three panels, each y labels | matrix | colour bar.
    cell, label_w, bar_w, top, axis_h = 0.38, 0.6, 1.25, 0.45, 0.65
    map_w, map_h = max(m * cell, 1.4), n * cell
    strip_w = 0.25 + map_h / n * _aspect(frames) if frames is not None else 0.0
    legend_h = 0.19 * (len(lines) + 1) if lines else 0.0
    width = 0.15 + strip_w + 3 * (label_w + map_w + bar_w)
    height = top + map_h + axis_h + legend_h
    fig = plt.figure(figsize=(width, height), dpi=120)

    def box(left, bottom, w, h):  # inches -> figure fractions
        return (left / width, bottom / height, w / width, h / height)

    base = axis_h + legend_h
    bar_labels = ("distance δ(clip, caption)", "soft-DTW weight", "S2DTW weight")
    for k, (matrix, title, label) in enumerate(zip(panels, PANEL_TITLES, bar_labels)):
        left = 0.15 + strip_w + k * (label_w + map_w + bar_w) + label_w
        ax = fig.add_axes(box(left, base, m * cell, map_h))
        image = ax.imshow(matrix, cmap="magma_r" if k == 0 else "Blues", aspect="auto",
                          interpolation="nearest")
        fig.colorbar(image, cax=fig.add_axes(box(left + m * cell + 0.1, base, 0.12, map_h)),
                     label=label)
        ax.set_title(title)
        ax.set_xlabel("caption")
        ax.set_ylabel("clip (time ↓)")
        ax.set_xticks(range(m), [str(j + 1) for j in range(m)])
        ax.set_yticks(range(n), [str(i + 1) for i in range(n)])
        if relevant is not None:
            for j, tick in enumerate(ax.get_xticklabels()):
                tick.set_color("black" if relevant[j] else "red")
        if n * m <= 100:
            middle = (matrix.max() + matrix.min()) / 2
            dark = matrix > middle  # both colour maps darken towards the maximum
            for i in range(n):
                for j in range(m):
                    ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center",
                            fontsize=6, color="white" if dark[i, j] else "black")
        if truth is not None:
            for i, j in zip(*np.nonzero(truth)):
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False,
                                           edgecolor="#e66101", linewidth=1.6))
    if frames is not None:
        strip = fig.add_axes(box(0.15, base, strip_w - 0.25, map_h))
        for i, frame in enumerate(frames):  # row i of the strip beside row i of the panels
            strip.imshow(frame, extent=(0, 1, i + 0.47, i - 0.47), aspect="auto")
        strip.set_xlim(0, 1)
        strip.set_ylim(n - 0.5, -0.5)
        strip.set_title("frames")
        strip.axis("off")
    for k, line in enumerate(lines):
        caption = k - (len(lines) - (m if captions_text is not None else 0))
        chatter = relevant is not None and caption >= 0 and not relevant[caption]
        fig.text(0.15 / width, (legend_h - 0.05 - 0.19 * k) / height, line, fontsize=8,
                 color="red" if chatter else "black", va="top", family="monospace")
    return fig


def render_alignment_png(matrices: dict[str, np.ndarray], path: str | os.PathLike,
                         **details) -> tuple[int, int]:
    """Writes `alignment_figure(matrices, **details)` to a PNG; returns its (width,
    height) in pixels."""
    fig = alignment_figure(matrices, **details)
    figures.save(fig, path)
    size = fig.canvas.get_width_height()
    pyplot().close(fig)
    return size


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

    def alignment(self, variables) -> tuple[dict[str, np.ndarray], dict]:
        """The matrices of `alignment_matrices` and the `alignment_figure` details:
        the captions' texts, each clip's middle frame (pixel runs), the ground
        truth and which captions narrate a step (records with steps)."""
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
        details = dict(captions_text=[vocab.decode(ids) for ids in sample["text"][:valid]])
        if "video" in sample:
            video = sample["video"][:valid]
            details["frames"] = video[:, video.shape[1] // 2]
        caption_step = sample["caption_step"][:valid]
        if np.any(caption_step >= 0):  # records with ground-truth steps
            details.update(truth=ground_truth(sample["clip_step"][:valid], caption_step),
                           relevant=caption_step >= 0)
        return matrices, details

    def run(self, variables, step):
        matrices, details = self.alignment(variables)
        path = self.artefact_path(step, "alignment.png")
        if path is not None:
            render_alignment_png(matrices, path, **details)
        return {"skipped_captions": float(np.sum(matrices["s2dtw"].sum(0) < 0.5)),
                "skipped_clips": float(np.sum(matrices["s2dtw"].sum(1) < 0.5))}


def write_alignment_view(workdir: str | os.PathLike, out: str | os.PathLike, index: int = 0,
                         step: int | None = None) -> str:
    """Renders one evaluation video's view of a saved run to `out`.

    Uses the run's `config.evals` section of type "alignment_view" if it has
    one (else the defaults with the run's data), with `index` overriding.

    Args:
      workdir: Run directory (`vtlearn.load`).
      out: Output PNG path (any filesystem, `vtlearn.fs`).
      index: Which sample of `evaluation_sequences` to show.
      step: Checkpoint step (default: the latest).

    Returns:
      The PNG's path.
    """
    import vtlearn
    from vtlearn.evaluation import standalone

    model = vtlearn.load(workdir, step=step)
    matrices, details = standalone(model, "alignment_view", index=index).alignment(model)
    render_alignment_png(matrices, out, **details)
    return os.fspath(out)


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
