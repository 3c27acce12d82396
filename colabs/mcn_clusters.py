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
# # MCN clusters
#
# Multimodal Clustering Networks (Chen et al. 2021) learn a joint space where video,
# audio and text of one moment meet, and cluster it. This maps the video-audio
# embeddings of the lab's ground-truth step segments in 2-D (t-SNE), coloured by
# step and by k-means cluster, with the clustering metrics (appendix B.2); then the
# modality gap of appendix C.1 (Table B): how close each modality's embedding is to
# the mean of its triplet, for aligned and misaligned triplets, before and after
# training. With no run given, this trains a small MCN on the lab (a few minutes).

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
WORKDIR = os.environ.get("VTLEARN_WORKDIR", "")  # an MCN run's workdir; "" = train one here
PRESET = os.environ.get("VTLEARN_PRESET", "local")  # the run trained here: "local" or "tiny"
OUT = os.environ.get("VTLEARN_OUT", "/tmp/vtlearn_colabs")

# %%
import numpy as np
from sklearn.cluster import KMeans

import vtlearn
from vtlearn import explore
from vtlearn.evaluation import clustering

if not WORKDIR:
    WORKDIR = explore.train_small(f"mcn.py:{PRESET}", f"{OUT}/mcn_{PRESET}")
model = vtlearn.load(WORKDIR)
print(f"{model.config.name}: step {model.step}")

# %% [markdown]
# The segments' video-audio embeddings, (video + audio) / 2, the points the
# `clustering` evaluator clusters; one k-means over all of them, k = the steps shown.

# %%
segments = explore.embed_units(model, "segment")
points = (segments["embedding"] + segments["audio"]) / 2
k = len(np.unique(segments["label"]))
clusters = KMeans(k, n_init=10, random_state=0).fit_predict(points)
print({name: round(float(v), 1) for name, v in
       clustering.clustering_metrics(segments["label"], clusters).items()})
explore.cluster_figure(explore.embedding_map(points), segments["label"], clusters,
                       f"{len(points)} segments");

# %% [markdown]
# Per task (video category), as the paper and the `clustering` evaluator report them:

# %%
per_task = clustering.cluster_units(segments, ("embedding", "audio"), segments["category"],
                                    "outputs")
print({name: round(float(v), 1) for name, v in per_task.items()})

# %% [markdown]
# Modality gap (appendix C.1): each narration window's video, audio and text
# embeddings; cosine of each to the triplet's mean, aligned and with one modality
# replaced by another window's.

# %%
def gap(m):
    units = explore.embed_units(m, "caption")
    return explore.alignment_cosines([units["embedding"], units["audio"], units["text"]])


before, after = gap(explore.untrained(model)), gap(model)
print(f"{'':12}{'before':>8}{'after':>8}   (paper, MMS + Clus + Recon: 0.873 / 0.260)")
for row in ("aligned", "misaligned"):
    print(f"{row:12}{before[row]:8.3f}{after[row]:8.3f}")
