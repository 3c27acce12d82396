"""Plots evaluators write as artefacts (matplotlib, no display needed)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

from vtlearn import fs


def pyplot():
    """matplotlib.pyplot: on the Agg backend (no display), except in a notebook
    kernel, whose own backend shows the figures (colabs/)."""
    import sys

    import matplotlib

    if "ipykernel" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: str | os.PathLike) -> None:
    """Writes `fig` to `path` on any filesystem (`vtlearn.fs`), in the format
    of its extension."""
    with fs.open(path, "wb") as f:
        fig.savefig(f, format=os.fspath(path).rsplit(".", 1)[-1])


def category_bars(path: str | os.PathLike, names: Sequence[str], values: Sequence[float], title: str,
                  chance: float = 50.0) -> None:
    """A bar per category (in the given order) with a dashed chance line."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * len(names) + 2), 3.5), dpi=120)
    ax.bar(range(len(names)), values, color="#3b6ea8")
    ax.axhline(chance, color="grey", linestyle="--", linewidth=1, label=f"chance ({chance:g})")
    ax.set_xticks(range(len(names)), names, rotation=45 if len(names) > 8 else 0)
    ax.set_xlabel("category")
    ax.set_ylabel("AUC (%)")
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    save(fig, path)
    plt.close(fig)


def grouped_distributions(path: str | os.PathLike, groups: Mapping[str, np.ndarray], title: str,
                          chance: float = 50.0) -> None:
    """A box plot per group over all values, with the pooled distribution first."""
    plt = pyplot()
    names = ["all", *groups]
    data = [np.concatenate(list(groups.values())), *groups.values()]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * len(names) + 2), 3.5), dpi=120)
    ax.boxplot(data, showmeans=True)
    ax.axhline(chance, color="grey", linestyle="--", linewidth=1)
    ax.set_xticks(range(1, len(names) + 1), names)
    ax.set_xlabel("category (videos per box: " + ", ".join(str(len(d)) for d in data) + ")")
    ax.set_ylabel("AUC (%)")
    ax.set_title(title)
    fig.tight_layout()
    save(fig, path)
    plt.close(fig)


def binned_means(path: str | os.PathLike, values: np.ndarray, by: Mapping[str, np.ndarray], ylabel: str,
                 bins: int = 8, chance: float = 50.0) -> None:
    """One panel per covariate: mean ± standard error of `values` in quantile bins."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(by), figsize=(4.0 * len(by), 3.2), dpi=120, squeeze=False)
    for ax, (name, x) in zip(axes[0], by.items()):
        x = np.asarray(x, np.float64)
        edges = np.unique(np.quantile(x, np.linspace(0, 1, bins + 1)))
        which = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, max(len(edges) - 2, 0))
        centres, means, errors = [], [], []
        for b in np.unique(which):
            v = values[which == b]
            centres.append(x[which == b].mean())
            means.append(v.mean())
            errors.append(v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else 0.0)
        ax.errorbar(centres, means, yerr=errors, marker="o", capsize=3, color="#3b6ea8")
        ax.axhline(chance, color="grey", linestyle="--", linewidth=1)
        ax.set_xlabel(name)
        ax.set_ylabel(f"{ylabel} (%)")
    fig.tight_layout()
    save(fig, path)
    plt.close(fig)
