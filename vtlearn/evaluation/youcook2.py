"""YouCook2 zero-shot clip retrieval (MIL-NCE Table 5a, VT-TWINS Table 2, MCN Table 3).

Files (`data_dir`), either of:
  * the official `youcookii_annotations_trainval.json`: `database[video_id]`
    -> `subset` ("training" | "validation"), `recipe_type`,
    `annotations[{segment: [start, end], sentence}]`;
  * MIL-NCE's `validation_youcook.csv` (3,350 clips of 436 videos), columns
    `end,start,task,text,video_id`.
`annotations` names the file (relative to `data_dir` or absolute); "" takes
the first of those two names that exists. Videos: `<video_id>.<ext>` anywhere
under `video_dir` (default `data_dir`: the official `raw_videos/validation/
<recipe>/` and the release's `validation/<task>/` both work).

Protocol of the MIL-NCE release (`eval_youcook.py`, `youcook_loader.py`):
every clip of the subset is a query; its segment is embedded as `num_clips`
windows of `data.num_frames` frames at `data.fps`, centre crop, and the
window embeddings are averaged; recall at 1/5/10 and median rank, text→video
and video→text, over the dot products (or the method's similarity).
Choices the release leaves open or makes differently, and ours:
  * window starts: the release spreads them with `linspace(start, end - span
    - 0.4)`, endpoints included; here they sit at the centres of `num_clips`
    equal parts of [start, end - span] (`vtlearn.data.pipeline`);
  * `num_clips`: 4 (the release's default `--num_windows_test`; its README
    evaluates with 10);
  * frames past the video's end repeat the last frame (the release pads with
    black); a segment shorter than one window gets one window centred on it;
  * a clip whose video is missing or fails to decode, or that starts after
    the video ends, is a miss ranked last (`missing_videos="miss"`, the
    denominator stays the number of clips) or left out ("drop"); the counts
    are reported (`videos_missing`, `videos_failed`, `clips_outside_video`);
  * a sentence with no word in the vocabulary is embedded as it is (all
    padding), as the release embeds it.

With `full_video=True`, MCN's text→full-video retrieval (§4.5, Table 4; the
MCN release's `video_evaluation.py`) over the embedded clips as well: all
captions of a video together query the whole video, whose clips are the items
(`full_video_retrieval`).
"""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import ml_collections
import numpy as np

from vtlearn.data.pipeline import Units
from vtlearn.evaluation import benchmark
from vtlearn.evaluation.retrieval import paired_retrieval_metrics

ANNOTATION_FILES = ("youcookii_annotations_trainval.json", "validation_youcook.csv")
CSV_COLUMNS = ("end", "start", "task", "text", "video_id")


@dataclasses.dataclass(frozen=True)
class Clip:
    """One annotated clip: a query and its segment (seconds)."""

    video_id: str
    start: float
    end: float
    text: str
    task: str


def read_clips(path: str | Path, subset: str = "validation") -> list[Clip]:
    """The clips of a YouCook2 annotation file (JSON or MIL-NCE's CSV), in file order.

    Raises:
      ValueError: naming the file and the entry (JSON) or line (CSV) of a
        malformed annotation.
    """
    path = Path(path)
    if path.suffix == ".csv":
        return _read_csv(path)
    try:
        database = json.loads(path.read_text())["database"]
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a YouCook2 annotation JSON with a 'database' "
                         f"({type(e).__name__}: {e})") from None
    clips = []
    for vid, video in database.items():
        if video.get("subset") != subset:
            continue
        for i, note in enumerate(video.get("annotations", ())):
            where = f"{path}: database[{vid!r}].annotations[{i}]"
            try:
                start, end = (float(t) for t in note["segment"])
                text = str(note["sentence"])
            except (KeyError, TypeError, ValueError) as e:
                raise ValueError(f"{where}: needs segment [start, end] and sentence "
                                 f"({type(e).__name__}: {e})") from None
            clips.append(_checked(Clip(vid, start, end, text, str(video.get("recipe_type", ""))),
                                  where))
    if not clips:
        raise ValueError(f"{path}: no clip in subset {subset!r}")
    return clips


def _read_csv(path: Path) -> list[Clip]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        lacking = set(CSV_COLUMNS) - set(reader.fieldnames or ())
        if lacking:
            raise ValueError(f"{path}: line 1 lacks column(s) {sorted(lacking)}; a YouCook2 "
                             f"CSV has {','.join(CSV_COLUMNS)}")
        clips = []
        for line, row in enumerate(reader, start=2):
            where = f"{path}: line {line}"
            try:
                clip = Clip(row["video_id"], float(row["start"]), float(row["end"]),
                            row["text"] or "", row["task"])
            except (TypeError, ValueError) as e:
                raise ValueError(f"{where}: {e}") from None
            clips.append(_checked(clip, where))
    if not clips:
        raise ValueError(f"{path}: no clip")
    return clips


def _checked(clip: Clip, where: str) -> Clip:
    if not clip.video_id:
        raise ValueError(f"{where}: empty video id")
    if not (0 <= clip.start < clip.end and np.isfinite(clip.end)):
        raise ValueError(f"{where}: segment [{clip.start}, {clip.end}] must satisfy "
                         "0 <= start < end")
    return clip


def find_annotations(data_dir: str | Path, name: str = "",
                     candidates: tuple[str, ...] = ANNOTATION_FILES) -> Path:
    """`data_dir/name` (or `name` if absolute), else the first candidate that exists."""
    data_dir = Path(data_dir)
    paths = [data_dir / name] if name else [data_dir / c for c in candidates]
    for path in paths:
        if path.is_file():
            return path
    raise ValueError(f"{data_dir}: no annotation file {' or '.join(p.name for p in paths)} "
                     f"(it holds {sorted(p.name for p in data_dir.iterdir())[:10]})")


def full_video_retrieval(similarity: np.ndarray, video_of: np.ndarray,
                         recall_at: tuple[int, ...] = (1, 5, 10)) -> dict[str, float]:
    """MCN's three text→full-video retrievals (percent recalls).

    Args:
      similarity: [N, N] caption i against clip j; caption i describes clip i.
      video_of: int [N] the video (0..V-1) of each clip.
      recall_at: the K.

    With s[i, v] = the best score of caption i over the clips of video v:
      * "caption_avg": video u's score for video v is the mean of s[i, v] over
        u's captions; R@K of u among the V videos (ties pessimistic);
      * "mv_video": each of u's captions votes for its top-K videos by s;
      * "mv_clip": each of u's captions votes for the videos of its top-K clips;
    for the votes, u is retrieved at K when fewer than K other videos get at
    least as many votes (ties pessimistic; the release breaks them by sort order).
    """
    similarity = np.asarray(similarity, np.float64)
    video_of = np.asarray(video_of)
    num_videos = int(video_of.max()) + 1
    best = np.stack([similarity[:, video_of == v].max(axis=1) for v in range(num_videos)], 1)
    averaged = np.stack([best[video_of == u].mean(axis=0) for u in range(num_videos)])
    out = {}
    own = np.diag(averaged)
    ranks = 1 + np.sum((averaged >= own[:, None]) & ~np.eye(num_videos, dtype=bool), axis=1)
    for k in recall_at:
        out[f"caption_avg/R@{k}"] = 100.0 * float(np.mean(ranks <= k))
        for name, votes_of in (("mv_video", lambda rows: np.argsort(-best[rows], 1)[:, :k]),
                               ("mv_clip", lambda rows: video_of[
                                   np.argsort(-similarity[rows], 1)[:, :k]])):
            hits = []
            for u in range(num_videos):
                votes = np.bincount(votes_of(video_of == u).reshape(-1), minlength=num_videos)
                others = np.sum(np.delete(votes, u) >= votes[u])
                hits.append(votes[u] > 0 and others < k)
            out[f"{name}/R@{k}"] = 100.0 * float(np.mean(hits))
    return out


def default_config() -> ml_collections.ConfigDict:
    """Keys of a youcook2 section (besides `type` and `every`)."""
    return benchmark.common_config(
        annotations="",          # "" = the first of ANNOTATION_FILES in data_dir
        subset="validation",     # JSON only
        num_clips=4,             # windows averaged per clip
        recall_at=(1, 5, 10),
        missing_videos="miss",   # "miss" (ranked last) | "drop"
        full_video=False,        # also MCN's text→full-video retrieval
    )


class Evaluator(benchmark.BenchmarkEvaluator):
    """Zero-shot clip retrieval on YouCook2; see the module docstring."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        s = self.settings
        self.check_choice("missing_videos", ("miss", "drop"))
        self.clips = read_clips(find_annotations(s.data_dir, s.annotations), s.subset)
        by_video: dict[str, list[Clip]] = {}
        for clip in self.clips:
            by_video.setdefault(clip.video_id, []).append(clip)
        self.video_sources, self.missing = self.sources({
            vid: dict(captions=benchmark.captions([c.text for c in cs], [c.start for c in cs],
                                                  [c.end for c in cs]),
                      category_name=cs[0].task)
            for vid, cs in by_video.items()})
        self.units = Units("caption", num_clips=s.num_clips, min_seconds=0.0,
                           keep_wordless=True)

    def run(self, variables, step):
        s = self.settings
        converted = self.convert(self.video_sources, self.missing)
        units = self.embed_units(variables, converted.files, self.units, with_text=False)
        rows = benchmark.unit_index(units, [(c.video_id, c.start, c.end) for c in self.clips])
        present = rows >= 0
        outside = sum(1 for c, r in zip(self.clips, rows)
                      if r < 0 and c.video_id in converted.converted)
        text = self.embed_texts(variables, [c.text for c in self.clips])[present]
        similarity = self.method.similarity(
            text, {k: v[rows[present]] for k, v in units.items()})
        total = len(self.clips) if s.missing_videos == "miss" else int(present.sum())
        metrics = paired_retrieval_metrics(similarity, total, tuple(s.recall_at))
        if s.full_video:
            _, video_of = np.unique([c.video_id for c, r in zip(self.clips, rows) if r >= 0],
                                    return_inverse=True)
            metrics |= {f"full_video/{k}": v for k, v in full_video_retrieval(
                similarity, video_of.reshape(-1), tuple(s.recall_at)).items()}
        return metrics | converted.counts() | {
            "clips": float(total), "clips_embedded": float(present.sum()),
            "clips_outside_video": float(outside)}
