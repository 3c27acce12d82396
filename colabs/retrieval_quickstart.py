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
# # Retrieval quickstart
#
# Load a trained vtlearn model, type sentences, and see which clips of the lab's test
# videos it ranks first, as frame strips with their captions and scores. With no run
# given, this trains a small MIL-NCE model on the built-in lab (its feature tower: a
# few minutes on a CPU). The last section does the same with the public MIL-NCE weights
# when their two files are present.

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
MILNCE_WEIGHTS = os.environ.get("MILNCE_WEIGHTS", "s3d_howto100m.pth")  # the release's files
MILNCE_DICT = os.environ.get("MILNCE_DICT", "s3d_dict.npy")

# %%
import vtlearn
from vtlearn import explore

if not WORKDIR:
    spec = f"milnce_s3d.py:{PRESET}"
    WORKDIR = explore.train_small(spec, f"{OUT}/milnce_{PRESET}",
                                  explore.feature_tower(spec) | {"evals.probe.every": 0})
model = vtlearn.load(WORKDIR)
print(f"{model.config.name}: method {model.config.method}, step {model.step}")

# %% [markdown]
# Embed every narrated caption window of the lab's test split once, then rank them for
# any typed sentence with the method's own similarity.

# %%
units = explore.embed_units(model, "caption")
print(f"{len(units['caption'])} caption windows, embeddings {units['embedding'].shape}")
steps = explore.step_names(model.config)
QUERIES = [steps[0], steps[1], "someone says hello"]  # type your own
explore.retrieval_figure(model, QUERIES, units);

# %% [markdown]
# Your own clips: a pixel model (e.g. `configs/milnce_s3d.py:local` trained from
# frames) embeds uint8 clips [N, T, H, W, 3] directly, `model.embed_video(clips)`; a
# feature-tower model takes `{"features_2d": [N, D2], "features_3d": [N, D3]}`. Here:
# the first clip's strip and its best-scoring queries.

# %%
import numpy as np

scores = explore.scores(model, steps, units)
best = np.argsort(-scores[:, 0])[:3]
print(f"caption: {str(units['caption'][0])!r}; best steps:",
      [(steps[i], round(float(scores[i, 0]), 3)) for i in best])

# %% [markdown]
# ## The public MIL-NCE weights
# Download `s3d_howto100m.pth` and `s3d_dict.npy` from the MIL-NCE release
# (antoine77340/S3D_HowTo100M) next to this notebook; the lab's clips are then embedded
# from their pixels by the released S3D-G (compiling it takes a few minutes on a CPU).

# %%
if os.path.exists(MILNCE_WEIGHTS) and os.path.exists(MILNCE_DICT):
    release = vtlearn.load_milnce_release(MILNCE_WEIGHTS, MILNCE_DICT)
    pixels = explore.clips(model.config, units, num_frames=16)
    release_units = dict(units, embedding=release.embed_video(pixels))
    explore.retrieval_figure(release, QUERIES, release_units, lab_config=model.config);
else:
    print(f"skipped: {MILNCE_WEIGHTS} and {MILNCE_DICT} are not here")
