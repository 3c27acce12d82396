# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # VT-TWINS alignment (Fig. 5)
#
# For one test video with irrelevant narrations, the distance matrix Δ between its
# clips and captions, the soft-DTW alignment and the S2DTW alignment (Ko et al. 2022,
# §5.2.2): S2DTW can route irrelevant captions through its dummies, leaving their
# columns empty, while soft-DTW must give every caption weight. With no run given, this
# trains a small VT-TWINS model on the lab's features (a pixel run, e.g.
# `python -m vtlearn.main --config=configs/vttwins_s3d.py:local`, also shows frames).

# %%
# On Colab, fetch and install vtlearn first (a local Jupyter uses the installed package).
import os
import subprocess
import sys

if "google.colab" in sys.modules and not os.path.isdir("/content/vtlearn"):
    REPOSITORY = os.environ.get("VTLEARN_REPOSITORY", "https://github.com/vtlearn/vtlearn")
    subprocess.run(["git", "clone", "-q", REPOSITORY, "/content/vtlearn"], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", "/content/vtlearn"],
                   check=True)
    sys.path.insert(0, "/content/vtlearn")

# %% tags=["parameters"]
WORKDIR = os.environ.get("VTLEARN_WORKDIR", "")  # a run's workdir; "" = train one here
PRESET = os.environ.get("VTLEARN_PRESET", "local")  # the run trained here: "local" or "tiny"
OUT = os.environ.get("VTLEARN_OUT", "/tmp/vtlearn_colabs")

# %%
import vtlearn
from vtlearn import explore
from vtlearn.evaluation import alignment_view, standalone

if not WORKDIR:
    spec = f"vttwins_s3d.py:{PRESET}"
    WORKDIR = explore.train_small(spec, f"{OUT}/vttwins_{PRESET}",
                                  explore.feature_tower(spec) | {"evals.probe.every": 0})
model = vtlearn.load(WORKDIR)
print(f"{model.config.name}: step {model.step}")

# %% [markdown]
# Find the first evaluation sequence that holds a caption narrating no step.

# %%
for index in range(16):
    matrices, details = standalone(model, "alignment_view", index=index).alignment(model)
    relevant = details.get("relevant")
    if relevant is not None and not relevant.all():
        break
else:
    print("none of the first 16 sequences has an irrelevant caption; showing the last")
if relevant is None:  # records without ground-truth steps
    relevant = [True] * len(details["captions_text"])
print(f"sequence {index}: {len(details['captions_text'])} captions, irrelevant:",
      [t for t, r in zip(details["captions_text"], relevant) if not r])

# %%
alignment_view.alignment_figure(matrices, **details);

# %% [markdown]
# Each caption's total weight: soft-DTW gives every caption at least 1; S2DTW may route a
# caption through the dummies (weight near 0). Whether it does depends on the distances'
# scale against φ (`vtlearn.evaluation.alignment_view`): with the release's `neg_dot`
# the smoothing lowers every cell next to a good match, so a caption right after a
# well-matched one is often kept; under `cosine` distances (1 − cos, matched ≈ 0,
# unrelated ≈ 1) S2DTW skips more readily, relevant captions included.

# %%
for distance in (model.config.loss.get("distance", "neg_dot"), "cosine"):
    view, _ = standalone(model, "alignment_view", index=index,
                         distance=distance).alignment(model)
    print(f"distance {distance}:")
    for text, keep, soft, s2 in zip(details["captions_text"], relevant,
                                    view["soft_dtw"].sum(0), view["s2dtw"].sum(0)):
        print(f"  {'step' if keep else 'irrelevant':>10}  soft-DTW {soft:5.2f}  "
              f"S2DTW {s2:5.2f}  {text}")
