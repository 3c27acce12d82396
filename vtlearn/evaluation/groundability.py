"""Groundability (Hessel et al. 2020, §3–4): how well a model links each clip
of a video to its own narration, per video, per caption and per category.

The paper defines its metrics in prose; the formulas below are our reading.
For one video with n (segment, ASR) pairs and S[j, i] = sim(text j, segment i):

* intra-video AUC (Fig. 1): the AUC of the n aligned pairs S[j, j] against
  the n(n−1) mismatched pairs S[j, i], i ≠ j, of the same video, ties
  counting ½, i.e. `roc_auc_score(eye(n).ravel(), S.ravel())`;
* segment AUC of caption j (§4, "Within-category observations"): the AUC of
  its own segment against the video's other segments,
  mean_{i≠j} ([S[j,j] > S[j,i]] + ½[S[j,j] = S[j,i]]);
* per-category AUC: the mean intra-video AUC of the videos of a category;
* per-video wins of model A over model B (§5): the fraction of videos where
  A's intra-video AUC is higher, ties counting ½.

Videos with fewer than 2 pairs have no AUC; they are skipped and counted.
Videos without a category label (-1) count in the mean, not per category.

As an evaluator (`config.evals.<name>.type = "groundability"`): every video
of `files` is tiled into windows of `segment_seconds` (every
`stride_seconds`, the deterministic counterpart of the paper's random 5-s
segments); windows with no ASR are dropped; the method's own similarity
scores each video's windows against their ASR. Metrics: "mean_auc",
"num_videos", "skipped_videos", "category_<c>" and, when `reference` gives
each category's expected groundability (the lab knows it), "spearman"
between per-category AUC and the reference. Artefacts (workdir/artefacts/<name>/):
`categories.csv` and `categories.png` (per-category AUC, sorted),
`videos.png` (per-video AUC by category, Fig. 2), `segments.png` (segment
AUC against position in the video and number of words, Fig. 3) and
`words.txt` (the OLS regression of segment AUC on unigram indicators,
controlling for position and length: the F-test of the words and the most
predictive words, §4).

Comparing two trained runs by per-video wins (§5), overall and on the
videos of instructional / other categories (`instructional` of A's
groundability section)::

  python -m vtlearn.evaluation.groundability --a=RUN_A --b=RUN_B [--files=PATTERN]
"""

from __future__ import annotations

from collections.abc import Mapping

import ml_collections
import numpy as np
from scipy import stats

from vtlearn import fs
from vtlearn.data.pipeline import Units
from vtlearn.data.text import Vocabulary
from vtlearn.evaluation import base


def intra_video_auc(similarity: np.ndarray) -> float:
    """AUC of the diagonal of `similarity` [n, n] (n >= 2) against its off-diagonal."""
    s = np.asarray(similarity, np.float64)
    n = s.shape[0]
    if s.shape != (n, n) or n < 2:
        raise ValueError(f"need a square similarity of at least 2 pairs, got {s.shape}")
    ranks = stats.rankdata(s.ravel()).reshape(n, n)  # average ranks: ties count ½
    positives = np.trace(ranks)
    return float((positives - n * (n + 1) / 2) / (n * (n * n - n)))


def segment_aucs(similarity: np.ndarray) -> np.ndarray:
    """[n] AUC of each caption's own segment against the video's other segments."""
    s = np.asarray(similarity, np.float64)
    own = np.diagonal(s)[:, None]
    wins = (own > s).astype(float) + 0.5 * (own == s)
    np.fill_diagonal(wins, 0.0)
    return wins.sum(1) / (s.shape[0] - 1)


def per_video_wins(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    """Fraction of the videos in both where A's AUC beats B's (ties ½)."""
    common = sorted(set(a) & set(b))
    if not common:
        raise ValueError("the two models share no video")
    return float(np.mean([1.0 if a[v] > b[v] else 0.5 if a[v] == b[v] else 0.0
                          for v in common]))


def unigram_regression(segment_auc: np.ndarray, token_ids: np.ndarray, position: np.ndarray,
                       num_words: np.ndarray, min_count: int = 5) -> dict:
    """OLS of segment AUC on word indicators, controlling for position and length.

    Design: intercept, position, position², number of words (the controls)
    and one 0/1 column per word id present in at least `min_count` segments.

    Args:
      segment_auc: [S] per-segment AUC.
      token_ids: int [S, L] each segment's words (0 = padding).
      position: [S] relative position of the segment in its video, in [0, 1].
      num_words: [S] words per segment.
      min_count: segments a word needs to get a column.

    Returns:
      {"words": word ids [W], "coefficients": [W], "f": F statistic of the
      word block against the controls alone, "p": its p-value, "dof": (W, S −
      columns)}, or None for f/p when there are no words or no residual
      degrees of freedom.
    """
    y = np.asarray(segment_auc, np.float64)
    present = np.zeros((len(y), int(token_ids.max()) + 1), bool)
    rows = np.repeat(np.arange(len(y)), token_ids.shape[1])
    present[rows, token_ids.ravel()] = True
    present[:, 0] = False
    words = np.flatnonzero(present.sum(0) >= min_count)
    controls = np.column_stack([np.ones_like(y), position, np.square(position), num_words])
    full = np.column_stack([controls, present[:, words].astype(float)])

    def rss(x):
        coef = np.linalg.lstsq(x, y, rcond=None)[0]
        return float(np.sum(np.square(y - x @ coef))), coef

    rss_controls, _ = rss(controls)
    rss_full, coef = rss(full)
    rank = np.linalg.matrix_rank(full)
    dof = len(y) - rank
    q = rank - np.linalg.matrix_rank(controls)
    out = {"words": words, "coefficients": coef[controls.shape[1]:], "f": None, "p": None,
           "dof": (int(q), int(dof))}
    if q > 0 and dof > 0 and rss_full > 0:
        f = ((rss_controls - rss_full) / q) / (rss_full / dof)
        out.update(f=float(f), p=float(stats.f.sf(f, q, dof)))
    return out


def default_config() -> ml_collections.ConfigDict:
    """Keys of a groundability section (besides `type` and `every`)."""
    return ml_collections.ConfigDict(dict(
        files="",              # "" = config.data.eval_files
        segment_seconds=5.0,
        stride_seconds=5.0,
        reference=(),          # expected groundability per category id (for "spearman")
        instructional=(),      # category ids judged instructional (for `compare_runs`)
        min_word_count=5,      # OLS: segments a word needs
        top_words=10,          # OLS: words listed each way
        artefacts=True,
    ))


class Evaluator(base.Evaluator):
    """Intra-video, segment and per-category AUC; see the module docstring."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        s = self.settings
        self.pattern = self.files("files", "eval_files")
        self.units = Units("window", num_clips=1, window_seconds=s.segment_seconds,
                           stride_seconds=s.stride_seconds)

    def analyse(self, variables) -> dict:
        """Per-video and per-segment results of the windows of `files`.

        Returns:
          {"videos": {video_id: (category, AUC)}, "skipped": videos with < 2
          pairs, "segments": {"auc", "position", "num_words", "token_ids",
          "category"} arrays over the segments of the scored videos}.
        """
        units = self.embed_units(variables, self.pattern, self.units)
        keep = np.any(units["text_ids"] != 0, axis=1)
        units = {k: v[keep] for k, v in units.items()}
        videos, skipped, segments = {}, 0, []
        for video in np.unique(units["video_id"]):
            idx = np.flatnonzero(units["video_id"] == video)
            if len(idx) < 2:
                skipped += 1
                continue
            idx = idx[np.argsort(units["start"][idx])]
            outputs = {k: v[idx] for k, v in units.items()}
            similarity = self.method.similarity(outputs["text"], outputs)
            videos[str(video)] = (int(units["category"][idx[0]]), intra_video_auc(similarity))
            end = units["end"][idx].max()
            segments.append(dict(
                auc=segment_aucs(similarity), position=units["start"][idx] / max(end, 1e-9),
                num_words=np.sum(units["text_ids"][idx] != 0, axis=1),
                token_ids=units["text_ids"][idx], category=units["category"][idx]))
        merged = {k: np.concatenate([s[k] for s in segments]) for k in segments[0]} if (
            segments) else {}
        return {"videos": videos, "skipped": skipped, "segments": merged}

    def run(self, variables, step):
        result = self.analyse(variables)
        videos = result["videos"]
        metrics = {"num_videos": float(len(videos)), "skipped_videos": float(result["skipped"])}
        if not videos:
            return metrics
        categories = np.array([c for c, _ in videos.values()])
        aucs = np.array([a for _, a in videos.values()])
        per_category = {int(c): float(aucs[categories == c].mean())
                        for c in np.unique(categories) if c >= 0}  # -1: no label
        metrics["mean_auc"] = 100.0 * float(aucs.mean())
        metrics |= {f"category_{c}": 100.0 * a for c, a in per_category.items()}
        reference = tuple(self.settings.reference)
        if reference and len(per_category) >= 2:
            known = [c for c in per_category if 0 <= c < len(reference)]
            rho = stats.spearmanr([per_category[c] for c in known],
                                  [reference[c] for c in known]).statistic
            if np.isfinite(rho):
                metrics["spearman"] = float(rho)
        if self.settings.artefacts:
            self._write_artefacts(step, per_category, categories, aucs, result["segments"])
        return metrics

    def _write_artefacts(self, step, per_category, categories, aucs, segments):
        from vtlearn.evaluation import figures

        path = self.artefact_path(step, "categories.csv")
        if path is None:
            return
        reference = tuple(self.settings.reference)
        order = sorted(per_category, key=per_category.get, reverse=True)
        lines = ["category,videos,auc" + (",reference" if reference else "")]
        for c in order:
            row = f"{c},{int(np.sum(categories == c))},{100 * per_category[c]:.2f}"
            lines.append(row + (f",{reference[c]}" if c < len(reference) else ""))
        fs.write_text(path, "\n".join(lines) + "\n")
        figures.category_bars(self.artefact_path(step, "categories.png"),
                              [str(c) for c in order], [100 * per_category[c] for c in order],
                              "intra-video AUC by category")
        figures.grouped_distributions(self.artefact_path(step, "videos.png"),
                                      {str(c): 100 * aucs[categories == c] for c in order},
                                      "intra-video AUC of each video, by category")
        figures.binned_means(self.artefact_path(step, "segments.png"), 100 * segments["auc"],
                             {"relative position in the video": segments["position"],
                              "words in the segment's ASR": segments["num_words"]},
                             "segment AUC")
        vocab = Vocabulary.load(self.config.data.vocab_path)
        ols = unigram_regression(segments["auc"], segments["token_ids"], segments["position"],
                                 segments["num_words"], self.settings.min_word_count)
        ranked = np.argsort(ols["coefficients"])
        k = self.settings.top_words
        text = [f"OLS of segment AUC on {len(ols['words'])} word indicators, controlling for "
                "position, position^2 and number of words",
                (f"F-test of the words: F={ols['f']:.3g}, p={ols['p']:.3g}, dof={ols['dof']}"
                 if ols["f"] is not None else "F-test of the words: not enough segments"),
                "words predicting LOW segment AUC:"]
        text += [f"  {vocab.words[ols['words'][i] - 1]}\t{ols['coefficients'][i]:+.4f}"
                 for i in ranked[:k]]
        text.append("words predicting HIGH segment AUC:")
        text += [f"  {vocab.words[ols['words'][i] - 1]}\t{ols['coefficients'][i]:+.4f}"
                 for i in ranked[::-1][:k]]
        fs.write_text(self.artefact_path(step, "words.txt"), "\n".join(text) + "\n")


def compare_runs(workdir_a: str, workdir_b: str, files: str | None = None) -> dict[str, float]:
    """Per-video wins of run A over run B on the same videos (latest checkpoints).

    Args:
      workdir_a, workdir_b: trained runs.
      files: evaluation records (default: A's groundability files, else its
        `data.eval_files`).

    Returns:
      {"wins": fraction of videos where A's intra-video AUC beats B's, "videos":
      their number, and with A's `instructional` categories set,
      "wins_instructional"/"wins_other" and "videos_instructional"/"videos_other"}.
    """
    import vtlearn
    from vtlearn.evaluation import standalone

    model_a, model_b = vtlearn.load(workdir_a), vtlearn.load(workdir_b)
    evaluator_a = standalone(model_a, "groundability", artefacts=False,
                             **({"files": files} if files else {}))
    evaluator_b = standalone(model_b, "groundability", artefacts=False,
                             files=files or evaluator_a.pattern)
    videos_a = evaluator_a.analyse(model_a)["videos"]
    videos_b = evaluator_b.analyse(model_b)["videos"]
    auc_a = {v: auc for v, (_, auc) in videos_a.items()}
    auc_b = {v: auc for v, (_, auc) in videos_b.items()}
    out = {"wins": per_video_wins(auc_a, auc_b), "videos": float(len(set(auc_a) & set(auc_b)))}
    instructional = set(evaluator_a.settings.instructional)
    if instructional:
        for subset, keep in (("instructional", True), ("other", False)):
            ids = {v for v, (c, _) in videos_a.items() if (c in instructional) == keep}
            a = {v: auc_a[v] for v in ids}
            if set(a) & set(auc_b):
                out[f"wins_{subset}"] = per_video_wins(a, auc_b)
                out[f"videos_{subset}"] = float(len(set(a) & set(auc_b)))
    return out


def _command_line() -> None:
    from absl import app, flags

    a = flags.DEFINE_string("a", None, "Run A's workdir.")
    b = flags.DEFINE_string("b", None, "Run B's workdir.")
    files = flags.DEFINE_string("files", None, "Evaluation records (default: A's).")
    flags.mark_flags_as_required(["a", "b"])

    def main(argv):
        if len(argv) > 1:
            raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
        from vtlearn.data.pipeline import keep_tensorflow_on_host

        keep_tensorflow_on_host()
        for key, value in compare_runs(a.value, b.value, files.value).items():
            print(f"{key}\t{value:.4g}")

    app.run(main)


if __name__ == "__main__":
    _command_line()
