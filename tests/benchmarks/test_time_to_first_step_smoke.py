"""benchmarks/time_to_first_step.py on its cheapest config (no timing is checked):
it compiles both programs of a lab preset and of the paper setup, at the
preset's global batch, cold and then from the persistent cache."""

from pathlib import Path

import jax
import pytest

from vtlearn import config_defaults
from vtlearn.data.text import Vocabulary

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "time_to_first_step.py"


def test_compiles_a_lab_preset_and_the_paper_setup_cold_then_from_the_cache(bench, tmp_path):
    hits = []

    def count_hits(event, **kwargs):
        if event == "/jax/compilation_cache/cache_hits":
            hits.append(event)

    jax.monitoring.register_event_listener(count_hits)
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    paper_vocab = str(tmp_path / "vocab.txt")
    Vocabulary([f"word{i}" for i in range(50)]).save(paper_vocab)
    path = Path(config_defaults.configs_dir()) / "hessel.py"
    try:
        for preset, spec in (("tiny", f"{path}:tiny"), ("paper", str(path))):
            hits.clear()
            with bench.persistent_cache(str(cache_dir)):
                times = bench.compile_seconds("hessel", preset, paper_vocab, str(cache_dir))
            assert times.batch_size == config_defaults.load_config(spec).train.batch_size
            assert len(list(cache_dir.glob("*-cache"))) == 2  # init and step, written cold
            assert len(hits) == 2  # and both read back for the second compiles
    finally:
        jax.monitoring.unregister_event_listener(count_hits)


def test_an_unknown_config_or_preset_is_named_before_anything_compiles(bench):
    bench.check_choices(list(bench.CONFIGS), list(bench.PRESETS))
    with pytest.raises(ValueError, match="--configs: no config 'milnce_s3dd'"):
        bench.check_choices(["hessel", "milnce_s3dd"], ["tiny"])
    with pytest.raises(ValueError, match="--presets: unknown preset 'locl'"):
        bench.check_choices(["hessel"], ["tiny", "locl"])
