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
# # Compare the four methods
#
# `python -m vtlearn.compare train --preset local --out DIR` trains MIL-NCE, VT-TWINS,
# MCN and Hessel et al. on one lab with one set of evaluators; this reads its runs'
# `metrics.jsonl` and shows the learning curves and the final table (mean ± sd over
# seeds). With no comparison given, it runs one here on PRESET with one seed (the
# "tiny" preset takes about a minute, "local" about 10 minutes per seed on 2 CPU
# cores).

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
COMPARE_DIR = os.environ.get("VTLEARN_COMPARE_DIR", "")  # a comparison's --out; "" = run one
PRESET = os.environ.get("VTLEARN_PRESET", "local")  # the comparison run here
OUT = os.environ.get("VTLEARN_OUT", "/tmp/vtlearn_colabs")

# %%
from IPython.display import Image, Markdown, display

from vtlearn import compare

if not COMPARE_DIR:
    COMPARE_DIR = f"{OUT}/compare_{PRESET}"
    compare.train_all(compare.plan(COMPARE_DIR, PRESET, seeds=(0,), lab_seed=0,
                                   benchmarks=compare.DEFAULT_BENCHMARKS))
runs = compare.discover(COMPARE_DIR)
print({method: len(workdirs) for method, workdirs in runs.items()}, "seeds per method")

# %%
display(Markdown(compare.report_comparison(runs, f"{OUT}/compare_report")))

# %%
display(Image(f"{OUT}/compare_report/curves.png"))

# %% [markdown]
# Training losses (each method's own loss, so compare shapes, not values):

# %%
compare.plot_curves(runs, ["loss"], f"{OUT}/compare_report/loss.png", split="train")
display(Image(f"{OUT}/compare_report/loss.png"))
