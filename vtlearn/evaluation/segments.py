"""Runs of equal frame labels and their overlap with ground truth (IoU, IoD).

Shared by the step-localisation evaluators. IoD = |G∩D| / |D| and
IoU = |G∩D| / |G∪D| (Bojanowski et al. 2014); the convention here is the
common per-segment one, stated in `segment_overlaps`.
"""

from __future__ import annotations

import numpy as np


def runs(labels: list[str] | np.ndarray) -> list[tuple[str, int, int]]:
    """(label, start, end) of each run of equal labels, end exclusive."""
    out, start = [], 0
    for i in range(1, len(labels) + 1):
        if i == len(labels) or labels[i] != labels[start]:
            out.append((labels[start], start, i))
            start = i
    return out


def segment_overlaps(truth: np.ndarray, predicted: np.ndarray, background) -> tuple[float, float]:
    """(IoU, IoD) of one video: per ground-truth non-background segment, the best
    same-class predicted segment's |G∩D|/|G∪D| and |G∩D|/|D|, averaged (nan if none)."""
    predicted_runs = runs(list(predicted))
    ious, iods = [], []
    for label, g0, g1 in runs(list(truth)):
        if label == background:
            continue
        iou = iod = 0.0
        for p_label, d0, d1 in predicted_runs:
            if p_label != label:
                continue
            inter = max(0, min(g1, d1) - max(g0, d0))
            iou = max(iou, inter / (max(g1, d1) - min(g0, d0)))
            iod = max(iod, inter / (d1 - d0))
        ious.append(iou)
        iods.append(iod)
    if not ious:
        return float("nan"), float("nan")
    return float(np.mean(ious)), float(np.mean(iods))
