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
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping, Sequence

import numpy as np

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
    """A Markdown table: a row per method, a column per metric ("mean ± sd")."""
    lines = ["| method | seeds | step | " + " | ".join(metrics) + " |",
             "|---|---|---|" + "---|" * len(metrics)]
    for label, cells in summary.items():
        seeds = sorted({int(c["n"]) for c in cells.values()}) or [0]
        steps = sorted({int(c["step"]) for c in cells.values()})
        texts = []
        for metric in metrics:
            c = cells.get(metric)
            texts.append("—" if c is None else f"{c['mean']:.1f}" if math.isnan(c["sd"])
                         else f"{c['mean']:.1f} ± {c['sd']:.1f}")
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line (see the module docstring)."""
    return _run(_parser().parse_args(argv))


def _run(args: argparse.Namespace) -> int:
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


if __name__ == "__main__":
    cli.run(_parser().parse_args, _run)
