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
# # Groundability
#
# Hessel et al. (2020) ask how well a model links each moment of a video to its own
# narration: the intra-video AUC of a video's aligned (segment, ASR) pairs against its
# mismatched ones, per category, per video and per segment. This runs the
# `groundability` evaluator on any checkpoint and shows its tables and plots; on the
# lab, it also ranks the categories against the groundability the lab set for them.
# With no run given, this trains a small Hessel et al. model on the lab (about a
# minute).

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
WORKDIR = os.environ.get("VTLEARN_WORKDIR", "")  # any run's workdir; "" = train one here
PRESET = os.environ.get("VTLEARN_PRESET", "local")  # the run trained here: "local" or "tiny"
OUT = os.environ.get("VTLEARN_OUT", "/tmp/vtlearn_colabs")
STEP = int(os.environ.get("VTLEARN_STEP", "0"))  # checkpoint step; 0 = the latest

# %%
import csv
import glob

from IPython.display import Image, display

import vtlearn
from vtlearn import explore
from vtlearn.data import lab
from vtlearn.evaluation import standalone

if not WORKDIR:
    WORKDIR = explore.train_small(f"hessel.py:{PRESET}", f"{OUT}/hessel_{PRESET}")
model = vtlearn.load(WORKDIR, step=STEP or None)
print(f"{model.config.name}: step {model.step}")

# %%
settings = {}
if model.config.data.lab:  # the lab knows each category's groundability
    world = lab.build_world(explore.lab_settings(model.config))
    settings = dict(reference=world.groundability,
                    instructional=tuple(c for c, i in enumerate(world.instructional) if i))
artefacts = f"{OUT}/groundability_{model.config.name}"
metrics = standalone(model, "groundability", workdir=artefacts, **settings).run(model,
                                                                                model.step)
print({k: round(v, 3) for k, v in metrics.items() if not k.startswith("category_")})

# %% [markdown]
# Per-category AUC (sorted), the per-video distribution by category (Fig. 2) and
# segment AUC by position and length (Fig. 3):

# %%
files = sorted(glob.glob(f"{artefacts}/artefacts/groundability/step_{model.step}_*"))
with open(next(f for f in files if f.endswith("categories.csv"))) as f:
    for row in list(csv.reader(f))[:12]:
        print(row)
for path in files:
    if path.endswith(".png"):
        display(Image(path))

# %% [markdown]
# Words whose presence predicts a segment's AUC (unigram OLS, §4):

# %%
print(open(next(f for f in files if f.endswith("words.txt"))).read()[:1500])
