"""Compare runs: one table and learning curves from their `metrics.jsonl`.

A *method* is a label and the workdirs of its seeds. For each metric the
table gives, per method, the mean ± sd over seeds of the metric's last
evaluation in each workdir (and the step it was taken at); the figure draws
each metric against the step, one line per method (the mean over seeds, the
band ± sd where seeds share a step).

  python -m vtlearn.compare report --out DIR \\
      --run "A=runs/a_s0,runs/a_s1" --run "B=runs/b_s0" \\
      --metric retrieval/t2v/R@10 --metric probe/top1

writes DIR/table.md and DIR/curves.png (the metrics of `split`, default
"eval"; `--split train --metric loss` draws training curves). The notebooks
in colabs/ call the same functions.

`train` runs the four-method comparison: every config of `configs/`
(`CONFIG_FILES`) at its `:local` (or `:tiny`) preset, each method's own
loss, model sizes and schedule, moved onto one lab (`COMPARISON_LABS`:
features and 8-kHz audio, so the pixel methods use the feature tower) and
given one set of evaluators (`comparison_evals`: retrieval by the method's
own similarity, clustering of ground-truth step segments, intra-video AUC
against the lab's set groundability, and the lab exported as benchmark
files, `BENCHMARK_EXPORTS`). Seeds vary the model's initialisation and data
order; the lab is the same for all (`--lab_seed`).

  python -m vtlearn.compare train --preset local --out DIR [--seeds 0,1,2] \\
      [--benchmarks youcook2,crosstask,mining_youtube] [--methods vttwins] \\
      [--set train.batch_size=32]

writes DIR/runs/<method>/seed_<S>/ (ordinary workdirs: `vtlearn.load`,
`python -m vtlearn.evaluate`), DIR/exports/<format>/, and the report,
DIR/table.md and DIR/curves.png. A killed comparison continues where it
stopped when rerun: finished runs are skipped (their `COMPLETE` file), the
interrupted one resumes from its checkpoint. Progress over all runs is
logged every `PROGRESS_SECONDS`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import time
from collections.abc import Mapping, Sequence

import ml_collections
import numpy as np
from absl import logging

from vtlearn import cli, fs

Rows = dict[str, dict[int, dict[str, float]]]  # split -> step -> metric -> value


def read_metrics(workdir: str) -> Rows:
    """A run's `metrics.jsonl`, rows of one split and step merged (later rows win).

    Raises:
      FileNotFoundError: naming the file, when the run has none.
      ValueError: naming file and line, for a line that is not a metrics row.
    """
    path = fs.join(workdir, "metrics.jsonl")
    if not fs.exists(path):
        raise FileNotFoundError(f"{path}: no metrics (is {workdir} a run directory?)")
    rows: Rows = {}
    for number, line in enumerate(fs.read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            split, step = row.pop("split"), int(row.pop("step"))
            values = {k: float(v) for k, v in row.items()}
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"{path}, line {number}: not a metrics row ({e})") from None
        rows.setdefault(split, {}).setdefault(step, {}).update(values)
    return rows


def last_value(rows: Rows, split: str, metric: str) -> tuple[int, float] | None:
    """(step, value) of the metric's last row in `split`, None if it has none."""
    steps = [s for s, values in rows.get(split, {}).items() if metric in values]
    if not steps:
        return None
    return max(steps), rows[split][max(steps)][metric]


def summarize(runs: Mapping[str, Sequence[str]], metrics: Sequence[str],
              split: str = "eval") -> dict[str, dict[str, dict[str, float]]]:
    """Per method and metric: mean, sd (n - 1; NaN for one seed), n, step.

    Args:
      runs: method label -> workdirs of its seeds.
      metrics: metric names as in `metrics.jsonl`, e.g. "retrieval/t2v/R@10".
      split: the rows to read.

    Returns:
      {label: {metric: {"mean", "sd", "n", "step"}}}; a metric no workdir of
      the method has is left out; "step" is the last evaluation's, the
      smallest over seeds if they differ.
    """
    out = {}
    for label, workdirs in runs.items():
        rows = [read_metrics(w) for w in workdirs]
        out[label] = {}
        for metric in metrics:
            found = [v for v in (last_value(r, split, metric) for r in rows) if v is not None]
            if not found:
                continue
            values = np.array([v for _, v in found])
            out[label][metric] = dict(
                mean=float(values.mean()),
                sd=float(values.std(ddof=1)) if len(values) > 1 else math.nan,
                n=float(len(values)), step=float(min(s for s, _ in found)))
    return out


def markdown_table(summary: Mapping[str, Mapping[str, Mapping[str, float]]],
                   metrics: Sequence[str]) -> str:
    """A Markdown table: a row per method, a column per metric ("mean ± sd"; two
    decimals in a column whose means all lie in [-1, 1], e.g. a correlation)."""
    lines = ["| method | seeds | step | " + " | ".join(metrics) + " |",
             "|---|---|---|" + "---|" * len(metrics)]
    digits = {m: 2 if all(abs(cells[m]["mean"]) <= 1 for cells in summary.values()
                          if m in cells) else 1 for m in metrics}
    for label, cells in summary.items():
        seeds = sorted({int(c["n"]) for c in cells.values()}) or [0]
        steps = sorted({int(c["step"]) for c in cells.values()})
        texts = []
        for metric in metrics:
            c = cells.get(metric)
            d = digits[metric]
            texts.append("—" if c is None else f"{c['mean']:.{d}f}" if math.isnan(c["sd"])
                         else f"{c['mean']:.{d}f} ± {c['sd']:.{d}f}")
        lines.append(f"| {label} | {'/'.join(map(str, seeds))} | "
                     f"{'/'.join(map(str, steps)) or '—'} | " + " | ".join(texts) + " |")
    return "\n".join(lines) + "\n"


def plot_curves(runs: Mapping[str, Sequence[str]], metrics: Sequence[str], path: str,
                split: str = "eval") -> str:
    """Writes the figure (format from the extension): a panel per metric, a
    line per method; returns `path`."""
    from vtlearn.evaluation import figures

    plt = figures.pyplot()
    rows = {label: [read_metrics(w) for w in workdirs] for label, workdirs in runs.items()}
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.4), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for label, seeds in rows.items():
            steps = sorted({s for r in seeds for s, v in r.get(split, {}).items() if metric in v})
            if not steps:
                continue
            per_step = [[r[split][s][metric] for r in seeds
                         if s in r.get(split, {}) and metric in r[split][s]] for s in steps]
            mean = np.array([np.mean(v) for v in per_step])
            line, = ax.plot(steps, mean, marker="o" if len(steps) < 20 else None, label=label)
            sd = np.array([np.std(v, ddof=1) if len(v) > 1 else 0.0 for v in per_step])
            if np.any(sd > 0):
                ax.fill_between(steps, mean - sd, mean + sd, color=line.get_color(), alpha=0.2)
        ax.set_title(metric, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    figures.save(fig, path)
    plt.close(fig)
    return path


# The four-method comparison ---------------------------------------------------------

CONFIG_FILES = ("milnce_s3d.py", "vttwins_s3d.py", "mcn.py", "hessel.py")
# Comparison preset -> (the methods' config preset, lab preset, lab overrides). The
# local lab: many_steps' 224 steps, features and 8-kHz audio, and a test split of
# 160 videos (5 per category for intra-video AUC; 225 distinct retrieval queries).
COMPARISON_LABS = {
    "local": ("local", "many_steps", dict(frames=False, sample_rate=8000,
                                          num_videos=(160, 32, 160))),
    "tiny": ("tiny", "tiny", dict(frames=False, sample_rate=8000)),
}
# Benchmark evaluator -> the lab export (`vtlearn.data.lab_exports`) it reads.
BENCHMARK_EXPORTS = {"youcook2": "youcook2", "msrvtt": "msrvtt", "crosstask": "crosstask",
                     "action_recognition": "hmdb51", "coin": "coin",
                     "mining_youtube": "miningyoutube", "youtube8m_segments": "youtube8m"}
# Settings an export needs besides its files (its ground truth is one label per second).
EXPORT_SETTINGS = {"mining_youtube": dict(label_rate=1.0)}
DEFAULT_BENCHMARKS = ("youcook2", "crosstask", "mining_youtube")
# What the report shows: metrics of the shared evaluators, then of each benchmark.
TABLE_METRICS = {
    "retrieval": ("retrieval/t2v/R@1", "retrieval/t2v/R@10", "retrieval/t2v/MedR",
                  "retrieval/v2t/R@10", "retrieval/t2v/R@10_chance"),
    "clustering": ("clustering/NMI", "clustering/ARI", "clustering/Acc",
                   "clustering/random/NMI"),
    "groundability": ("groundability/mean_auc", "groundability/spearman"),
    "youcook2": ("youcook2/t2v/R@1", "youcook2/t2v/R@10", "youcook2/t2v/MedR"),
    "msrvtt": ("msrvtt/t2v/R@1", "msrvtt/t2v/R@10", "msrvtt/t2v/MedR"),
    "crosstask": ("crosstask/recall", "crosstask/recall_uniform", "crosstask/recall_random"),
    "action_recognition": ("action_recognition/top1", "action_recognition/zero_shot/top1"),
    "coin": ("coin/frame_accuracy",),
    "mining_youtube": ("mining_youtube/frame_accuracy", "mining_youtube/IoU",
                       "mining_youtube/IoD"),
    "youtube8m_segments": ("youtube8m_segments/MAP",),
}
CURVE_METRICS = ("retrieval/t2v/R@10", "clustering/NMI", "groundability/mean_auc")
PROGRESS_SECONDS = 60.0
COMPLETE_FILE = "COMPLETE"


def comparison_lab(preset: str, lab_seed: int = 0):
    """(the lab preset's name, its `LabConfig` with the comparison's overrides)."""
    from vtlearn.data import lab

    if preset not in COMPARISON_LABS:
        raise ValueError(f"unknown comparison preset {preset!r}; choose from "
                         f"{sorted(COMPARISON_LABS)}")
    _, lab_preset, overrides = COMPARISON_LABS[preset]
    return lab_preset, lab.lab_config(lab_preset, seed=lab_seed, **overrides)


def comparison_evals(num_steps: int, world, benchmark_dirs: Mapping[str, str],
                     cache_dir: str) -> ml_collections.ConfigDict:
    """The evaluators every method of the comparison gets.

    Args:
      num_steps: the method's schedule; the shared evaluators run at each
        quarter of it (the learning curves), the benchmarks at its end.
      world: the lab's `World` (its categories' set groundability).
      benchmark_dirs: benchmark evaluator -> its lab export's directory.
      cache_dir: where the benchmarks' records are cached.
    """
    from vtlearn.evaluation.base import section

    quarter = max(num_steps // 4, 1)
    evals = dict(
        retrieval=section("retrieval", every=quarter),
        # Segments as annotated, not widened to any method's training windows.
        clustering=section("clustering", every=quarter, min_seconds=0.0),
        groundability=section("groundability", every=quarter, reference=world.groundability,
                              instructional=tuple(c for c, flag in enumerate(world.instructional)
                                                  if flag)))
    for name, export_dir in benchmark_dirs.items():
        fmt = BENCHMARK_EXPORTS[name]
        data_dir = fs.join(export_dir, "crosstask_release") if fmt == "crosstask" else export_dir
        files = dict(data_dir=data_dir, cache_dir=cache_dir)
        if fmt != "youtube8m":  # its records hold the features
            files.update(features_dir=fs.join(export_dir, "features"),
                         waveform_dir=fs.join(export_dir, "waveforms"))
        evals[name] = section(name, every=num_steps, **files, **EXPORT_SETTINGS.get(name, {}))
    return ml_collections.ConfigDict(evals)


def comparison_config(config_file: str, preset: str, seed: int, lab_seed: int,
                      benchmark_dirs: Mapping[str, str], cache_dir: str
                      ) -> ml_collections.ConfigDict:
    """A method's preset moved onto the comparison's lab and evaluators.

    Its loss, model sizes, batch and schedule stay its preset's; pixel towers
    become the feature tower (`vtlearn.models.features`), since the lab holds
    features, not frames.
    """
    from vtlearn import config_defaults
    from vtlearn.data import lab

    method_preset = COMPARISON_LABS[preset][0]
    config = config_defaults.load_config(f"{config_file}:{method_preset}")
    lab_preset, settings = comparison_lab(preset, lab_seed)
    config_defaults.use_lab(config, lab_preset, **{
        k: getattr(settings, k) for k in ("seed", *COMPARISON_LABS[preset][2])})
    config.data.update(video=False, features_2d=settings.features_2d,
                       features_3d=settings.features_3d)
    if "video" in config.model:
        config.model.video.name = "features"
    if config.data.audio_seconds > 0:
        config.data.audio_rate = settings.sample_rate
    config.seed = seed
    config.evals = comparison_evals(config.train.num_steps, lab.build_world(settings),
                                    benchmark_dirs, cache_dir)
    return config


def export_benchmarks(preset: str, lab_seed: int, benchmarks: Sequence[str],
                      out: str) -> dict[str, str]:
    """Writes the lab's test split in each benchmark's format (once: a finished
    export is kept); returns benchmark evaluator -> export directory."""
    import shutil

    from vtlearn.data import lab_exports

    unknown = sorted(set(benchmarks) - set(BENCHMARK_EXPORTS))
    if unknown:
        raise ValueError(f"unknown benchmark(s) {unknown}; choose from "
                         f"{sorted(BENCHMARK_EXPORTS)}")
    _, settings = comparison_lab(preset, lab_seed)
    dirs = {}
    for name in benchmarks:
        fmt = BENCHMARK_EXPORTS[name]
        final = fs.join(out, "exports", fmt)
        if not fs.exists(final):
            logging.info("Exporting the lab's test split as %s files to %s", fmt, final)
            partial = final + ".partial"
            shutil.rmtree(partial, ignore_errors=True)
            lab_exports.export(settings, fmt, partial)
            os.replace(partial, final)
        dirs[name] = final
    return dirs


@dataclasses.dataclass(frozen=True)
class Run:
    """One method and seed of a comparison."""

    method: str
    seed: int
    workdir: str
    config: ml_collections.ConfigDict

    @property
    def complete(self) -> bool:
        return fs.exists(fs.join(self.workdir, COMPLETE_FILE))


def plan(out: str, preset: str, seeds: Sequence[int], lab_seed: int,
         benchmarks: Sequence[str], configs_dir: str | None = None,
         methods: Sequence[str] = (), overrides: Sequence[str] = ()) -> list[Run]:
    """The comparison's runs (exporting the benchmarks first), method-major.

    Args:
      methods: `config.method` names to run (default: all four).
      overrides: "KEY=VALUE" settings applied to every run's config
        (`config_defaults.override`), for an ablation on the same lab.
    """
    from vtlearn import config_defaults

    configs_dir = configs_dir or config_defaults.configs_dir()
    dirs = export_benchmarks(preset, lab_seed, benchmarks, out)
    runs = []
    for name in CONFIG_FILES:
        for seed in seeds:
            config = comparison_config(fs.join(configs_dir, name), preset, seed, lab_seed,
                                       dirs, fs.join(out, "cache"))
            if methods and config.method not in methods:
                break
            for text in overrides:
                key, sep, value = text.partition("=")
                if not sep:
                    raise ValueError(f"--set {text!r}: expected KEY=VALUE")
                config_defaults.override(config, key, value)
            runs.append(Run(config.method, seed,
                            fs.join(out, "runs", config.method, f"seed_{seed}"), config))
    return runs


def _last_train_step(workdir: str) -> int:
    try:
        steps = read_metrics(workdir).get("train", {})
    except (FileNotFoundError, ValueError):
        return 0
    return max(steps, default=0)


class _Progress:
    """Logs, every `PROGRESS_SECONDS`, the steps done over all runs."""

    def __init__(self, runs: Sequence[Run]):
        import threading

        self.runs, self.current = runs, None
        self.total = sum(r.config.train.num_steps for r in runs)
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def line(self) -> str:
        done = sum(r.config.train.num_steps if r.complete else _last_train_step(r.workdir)
                   for r in self.runs)
        finished = sum(r.complete for r in self.runs)
        where = ""
        if self.current is not None:
            r = self.current
            where = (f"; now {r.method} seed {r.seed}, step "
                     f"{_last_train_step(r.workdir)}/{r.config.train.num_steps}")
        return (f"comparison: {finished}/{len(self.runs)} runs complete, "
                f"{done}/{self.total} training steps ({100 * done / self.total:.0f}%)"
                f"{where}; {(time.monotonic() - self.started) / 60:.1f} min in this session")

    def _loop(self):
        while not self._stop.wait(PROGRESS_SECONDS):
            logging.info("%s", self.line())

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()


def train_all(runs: Sequence[Run]) -> None:
    """Trains and evaluates every run not complete yet, in order.

    A SIGTERM stops the comparison: during a run, at its next step (the run
    checkpoints), between runs, before the next one.

    Raises:
      SystemExit: when stopped before every run is complete; rerunning the
        same command continues.
    """
    import signal
    import threading

    from vtlearn import train

    stop = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        with _Progress(runs) as progress:
            logging.info("%s", progress.line())
            for index, run in enumerate(runs, 1):
                if run.complete:
                    continue
                if stop.is_set():
                    raise SystemExit("vtlearn.compare: stopped by SIGTERM before "
                                     f"{run.workdir}; rerun the same command to continue")
                progress.current = run
                logging.info("comparison: run %d/%d, %s seed %d, in %s", index, len(runs),
                             run.method, run.seed, run.workdir)
                train.train_and_evaluate(run.config, run.workdir)
                reached = _last_train_step(run.workdir)
                if reached < run.config.train.num_steps:
                    raise SystemExit(f"vtlearn.compare: {run.workdir} stopped at step "
                                     f"{reached} of {run.config.train.num_steps}; rerun the "
                                     "same command to continue the comparison")
                fs.write_text(fs.join(run.workdir, COMPLETE_FILE), "")
                progress.current = None
                logging.info("%s", progress.line())
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def discover(out: str) -> dict[str, list[str]]:
    """A comparison's runs found on disk: method -> its seeds' workdirs."""
    found: dict[str, list[str]] = {}
    for method in sorted(fs.listdir(fs.join(out, "runs"))):
        seeds = sorted(d for d in fs.listdir(fs.join(out, "runs", method))
                       if d.startswith("seed_"))
        found[method] = [fs.join(out, "runs", method, d) for d in seeds]
    return found


def report_comparison(runs: Mapping[str, Sequence[str]], out: str) -> str:
    """Writes `out`/table.md (a table per evaluator that ran) and `out`/curves.png.

    Args:
      runs: method -> its seeds' workdirs (`discover`).
      out: the report's directory.

    Returns:
      The tables' Markdown.
    """
    parts = []
    for group, metrics in TABLE_METRICS.items():
        summary = summarize(runs, metrics)
        if any(summary.values()):
            parts.append(f"### {group}\n\n" + markdown_table(summary, metrics))
    text = "\n".join(parts)
    fs.makedirs(out)
    fs.write_text(fs.join(out, "table.md"), text)
    plot_curves(runs, CURVE_METRICS, fs.join(out, "curves.png"))
    return text


def _check_settings(out: str, settings: dict) -> None:
    """Refuses to continue a comparison made on another lab or preset."""
    path = fs.join(out, "comparison.json")
    if fs.exists(path):
        saved = json.loads(fs.read_text(path))
        changed = {k: (saved.get(k), v) for k, v in settings.items() if saved.get(k) != v}
        if changed:
            raise SystemExit(f"vtlearn.compare: {out} holds a comparison with other settings "
                             f"(saved, asked): {changed}; use another --out")
    else:
        fs.makedirs(out)
        fs.write_text(path, json.dumps(settings, indent=1) + "\n")


def _method(text: str) -> tuple[str, list[str]]:
    label, sep, dirs = text.partition("=")
    if not sep or not label or not dirs:
        raise argparse.ArgumentTypeError(f"expected LABEL=DIR[,DIR...], got {text!r}")
    return label, dirs.split(",")


def _parser() -> argparse.ArgumentParser:
    parser = cli.argument_parser(prog="python -m vtlearn.compare",
                                 description="Compare runs: a table and learning curves.")
    commands = parser.add_subparsers(dest="command", required=True)
    report = commands.add_parser("report", help="table.md and curves.png of finished runs")
    report.add_argument("--run", type=_method, action="append", required=True,
                        help="LABEL=DIR[,DIR...]: a method and its seeds' workdirs")
    report.add_argument("--metric", action="append", required=True)
    report.add_argument("--split", default="eval")
    report.add_argument("--out", required=True, help="directory for table.md and curves.png")
    train = commands.add_parser("train", help="train and evaluate the four methods on one lab")
    train.add_argument("--preset", default="local", choices=sorted(COMPARISON_LABS))
    train.add_argument("--out", required=True,
                       help="local directory: runs/, exports/, table.md, curves.png")
    train.add_argument("--seeds", type=_ints, default=(0, 1, 2), help="e.g. 0,1,2")
    train.add_argument("--lab_seed", type=int, default=0)
    train.add_argument("--benchmarks", type=_names, default=DEFAULT_BENCHMARKS,
                       help=f"comma-separated, of {','.join(BENCHMARK_EXPORTS)}; '' for none")
    train.add_argument("--configs_dir", default=None,
                       help="the repository's configs/ (default: beside the package)")
    train.add_argument("--methods", type=_names, default=(),
                       help="comma-separated config.method names (default: all four)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="a config key set in every run, e.g. train.batch_size=32")
    return parser


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")


def _names(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line (see the module docstring)."""
    return _run(_parser().parse_args(argv))


def _run(args: argparse.Namespace) -> int:
    if args.command == "train":
        return _train(args)
    runs = dict(args.run)
    try:
        table = markdown_table(summarize(runs, args.metric, args.split), args.metric)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"vtlearn.compare: {e}") from None
    fs.makedirs(args.out)
    fs.write_text(fs.join(args.out, "table.md"), table)
    plot_curves(runs, args.metric, fs.join(args.out, "curves.png"), args.split)
    print(table, end="")
    print(f"written: {fs.join(args.out, 'table.md')}, {fs.join(args.out, 'curves.png')}")
    return 0



def _train(args: argparse.Namespace) -> int:
    if not fs.is_local(args.out):
        raise SystemExit(f"vtlearn.compare: --out={args.out!r} must be a local directory "
                         "(the lab's benchmark exports are written there)")
    _check_settings(args.out, dict(preset=args.preset, lab_seed=args.lab_seed,
                                   overrides=sorted(args.set)))
    try:
        runs = plan(args.out, args.preset, args.seeds, args.lab_seed, args.benchmarks,
                    args.configs_dir, args.methods, args.set)
    except (FileNotFoundError, KeyError, ValueError) as e:
        raise SystemExit(f"vtlearn.compare: {e}") from None
    train_all(runs)
    print(report_comparison(discover(args.out), args.out), end="")
    print(f"written: {fs.join(args.out, 'table.md')}, {fs.join(args.out, 'curves.png')}")
    return 0


if __name__ == "__main__":
    cli.run(_parser().parse_args, _run)
