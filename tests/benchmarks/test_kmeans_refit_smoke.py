"""benchmarks/kmeans_refit.py at a tiny size: it runs and agrees with scikit-learn.

No timing is checked. The script itself asserts that ours and scikit-learn's
KMeans (same points, centroids and iterations) agree; the run here also
reads the agreement it prints. The train-step part (minutes on 2 cores) is
left out of the run; its helpers are checked directly.
"""

from pathlib import Path
import re
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from vtlearn import config_defaults
from vtlearn.data import pipeline
from vtlearn.losses import clustering

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "kmeans_refit.py"


@pytest.mark.slow
def test_script_runs_and_agrees_with_sklearn():
    command = [sys.executable, str(SCRIPT), "--points", "1500", "--dim", "8", "--clusters", "6",
               "--iterations", "3", "--repeats", "1", "--no-train-step"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    found = re.search(r"agreement ours vs scikit-learn: ([0-9.]+) \(", done.stdout)
    assert found, done.stdout
    assert float(found.group(1)) >= 0.99
    rows = [line for line in done.stdout.splitlines() if line.startswith(("ours:", "(a)"))]
    assert len(rows) == 2, done.stdout
    assert "FLOPs per Lloyd iteration" in done.stdout and "load average" in done.stdout


def test_peers_start_from_the_same_centroids(bench):
    x, init = bench.make_data(300, 5, 7)
    assert x.dtype == init.dtype == np.float32 and init.shape == (7, 5)
    rows = {tuple(r) for r in x.tolist()}
    assert all(tuple(c) in rows for c in init.tolist()) and len({tuple(c) for c in
                                                                 init.tolist()}) == 7
    # One scikit-learn iteration from `init` is one Lloyd step of ours from it.
    fitted = bench.sklearn_kmeans(x, init, 1)
    ours, _ = clustering.lloyd_step(jnp.asarray(x), jnp.ones([300], bool), jnp.asarray(init),
                                    "euclidean")
    np.testing.assert_allclose(fitted.cluster_centers_, ours, rtol=1e-4, atol=1e-5)


def test_iteration_count_is_where_kmeans_stops(bench):
    """Points 0, 1, 10, 11 from centroids (0, 1): step 1 gives (0, 22/3), step 2
    (0.5, 10.5), step 3 the same again, so `kmeans` stops after 3 steps."""
    x = jnp.asarray([[0.0], [1.0], [10.0], [11.0]])
    valid, start = jnp.ones([4], bool), jnp.asarray([[0.0], [1.0]])
    lc = config_defaults.load_config(f"{ROOT / 'configs' / 'mcn.py'}:tiny").loss
    lc.kmeans_iterations, lc.kmeans_tolerance = 30, 1e-4
    assert bench.lloyd_iterations_run(x, valid, start, lc) == 3
    np.testing.assert_allclose(clustering.kmeans(x, valid, start, 30, "euclidean",
                                                 1e-4).centroids, [[0.5], [10.5]])
    lc.kmeans_iterations = 2  # the cap
    assert bench.lloyd_iterations_run(x, valid, start, lc) == 2


def test_random_batch_follows_the_sample_spec(bench):
    config = config_defaults.load_config(f"{ROOT / 'configs' / 'mcn.py'}:tiny")
    spec = pipeline.sample_spec(config.data)
    batch = bench.random_batch(spec, 4, 11, np.random.default_rng(0))
    assert set(batch) == set(spec)
    for key, (shape, dtype) in spec.items():
        assert batch[key].shape == (4,) + tuple(shape) and batch[key].dtype == dtype, key
    assert batch["text"].min() >= 1 and batch["text"].max() < 11
    assert batch["text_mask"].all()
    assert (batch["audio_frames"] == spec["audio"][0][1]).all()
