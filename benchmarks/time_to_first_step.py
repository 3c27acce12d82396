"""Time to first step: what each config's presets compile before their first update.

Before its first update a fresh run compiles two programs: the model's init
(`Trainer.init_state`, LLVM level 1 on CPU, `train.init_compiler_options`)
and the train step at the preset's global batch. This script compiles both
ahead of time from the configs' shapes, without reading any record, and
prints the seconds of each and their sum, per config and preset (paper
setup, `:local`, `:tiny`): cold, into an empty persistent compilation
cache, then again from that cache, which is what a resumed run or a rerun
pays (`python -m vtlearn.main` keeps the cache, `sharding.use_compilation_cache`).
The first batch comes on top (the input pipeline's start-up; seconds on the
lab). The lab presets use their lab's vocabulary (generating the lab if it
is not cached); the paper setups, which read a user's data, get a word list
of `--paper_vocab_size` words (default: the MIL-NCE release's 66,250-row
word table; Hessel et al. report 61K words on YouTube-600K).

The numbers are XLA:CPU's on this machine's devices: an accelerator
compiles other code (a TPU pod compiles each device's shard of the batch),
so they rank the presets and bound a CPU run's wait, not a TPU job's.

  python benchmarks/time_to_first_step.py [--configs milnce_s3d,mcn] [--presets tiny,local,paper]
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
import time

from vtlearn import cli

CONFIGS = ("milnce_s3d", "milnce_i3d", "vttwins_s3d", "mcn", "hessel")
PRESETS = ("paper", "local", "tiny")


@dataclasses.dataclass(frozen=True)
class CompileTimes:
    """Seconds to compile a preset's init and train step, cold and from the cache."""

    batch_size: int
    init: float
    step: float
    init_cached: float
    step_cached: float


def _seconds(lowered, options=None) -> float:
    begin = time.perf_counter()
    lowered.compile(options)
    return time.perf_counter() - begin


@contextlib.contextmanager
def persistent_cache(directory: str):
    """Points JAX's persistent compilation cache at `directory`, caching every
    program, and restores the previous cache on exit."""
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    previous = (jax.config.jax_compilation_cache_dir,
                jax.config.jax_persistent_cache_min_compile_time_secs)
    compilation_cache.reset_cache()
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    try:
        yield
    finally:
        compilation_cache.reset_cache()
        jax.config.update("jax_compilation_cache_dir", previous[0])
        jax.config.update("jax_persistent_cache_min_compile_time_secs", previous[1])


def compile_seconds(config_name: str, preset: str, paper_vocab: str,
                    cache_dir: str) -> CompileTimes:
    """Compiles one config's preset twice: cold, then from the persistent
    compilation cache (`persistent_cache`), whose directory `cache_dir` this
    empties first."""
    import jax

    from vtlearn import config_defaults, sharding, train
    from vtlearn.data.sources import resolve_data

    path = os.path.join(config_defaults.configs_dir(), f"{config_name}.py")
    if preset == "paper":
        config = config_defaults.load_config(path)
        config.data.vocab_path = paper_vocab
        if config.model.get("text", {}).get("freeze_word_embeddings"):
            # Frozen word2vec rows are read by `init_state`, not compiled in.
            config.model.text.word2vec_path = "word2vec.bin (not read: compiling only)"
    else:
        config = resolve_data(config_defaults.load_config(f"{path}:{preset}"))
    trainer = train.Trainer(config, sharding.make_mesh())
    batch_size = config.train.batch_size
    batch = {k: jax.ShapeDtypeStruct((batch_size,) + shape, dtype,
                                     sharding=sharding.batch_sharding(trainer.mesh))
             for k, (shape, dtype) in trainer.sample_spec}
    options = train.init_compiler_options()

    def seconds() -> tuple[float, float]:  # Lowered afresh: a lowering keeps its executable.
        init = sharding.jit(trainer._init_variables, static_argnums=0,
                            out_shardings=trainer.replicated).lower(trainer.sample_spec)
        step = trainer.jit_train_step().lower(trainer.abstract_state(), batch)
        return _seconds(init, options), _seconds(step)

    for name in os.listdir(cache_dir):  # Presets may share a program: each starts cold.
        os.remove(os.path.join(cache_dir, name))
    cold = seconds()
    return CompileTimes(batch_size, *cold, *seconds())


def check_choices(configs: list[str], presets: list[str]) -> None:
    """Raises ValueError naming an unknown config or preset, before anything compiles."""
    from vtlearn import config_defaults

    directory = config_defaults.configs_dir()
    for name in configs:
        if not os.path.isfile(os.path.join(directory, f"{name}.py")):
            raise ValueError(f"--configs: no config {name!r} in {directory} "
                             f"(known: {', '.join(CONFIGS)})")
    for preset in presets:
        if preset not in PRESETS:
            raise ValueError(f"--presets: unknown preset {preset!r} (known: {', '.join(PRESETS)})")


def main() -> None:
    parser = cli.argument_parser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--presets", default=",".join(PRESETS))
    parser.add_argument("--paper_vocab_size", type=int, default=66_250)
    args = parser.parse_args()
    configs, presets = args.configs.split(","), args.presets.split(",")
    check_choices(configs, presets)
    import jax

    from vtlearn.data.text import Vocabulary

    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {len(jax.devices())} "
          f"device(s); load average {os.getloadavg()[0]:.1f}")
    print("| config | preset | global batch | init (s) | train step (s) | total (s) | "
          "from the cache (s) |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as directory:
        cache_dir = os.path.join(directory, "cache")
        os.makedirs(cache_dir)
        paper_vocab = os.path.join(directory, "vocab.txt")
        Vocabulary([f"word{i}" for i in range(args.paper_vocab_size)]).save(paper_vocab)
        with persistent_cache(cache_dir):
            for config_name in configs:
                for preset in presets:
                    t = compile_seconds(config_name, preset, paper_vocab, cache_dir)
                    print(f"| {config_name} | {preset} | {t.batch_size} | {t.init:.1f} | "
                          f"{t.step:.1f} | {t.init + t.step:.1f} | "
                          f"{t.init_cached + t.step_cached:.1f} |", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
