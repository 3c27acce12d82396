"""Compile time of a model's init program: LLVM level 1 (vtlearn) against the default 3.

The init program runs once, so vtlearn compiles it for compile time
(`vtlearn.train.init_compiler_options`); both levels give the same variables
(tests/test_train.py). Prints each level's compile seconds (best of
`--repeats`, the persistent compilation cache off) and the ratio.

  python benchmarks/init_compile.py [--config configs/milnce_s3d.py:tiny] [--repeats 3]
"""

from __future__ import annotations

import os
import time

from vtlearn import cli


def compile_seconds(trainer, level: int) -> float:
    import jax

    lowered = jax.jit(trainer._init_variables, static_argnums=0).lower(trainer.sample_spec)
    begin = time.perf_counter()
    lowered.compile(compiler_options={"xla_backend_optimization_level": level})
    return time.perf_counter() - begin


def main() -> None:
    parser = cli.argument_parser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/milnce_s3d.py:tiny")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from vtlearn import sharding, train
    from vtlearn.config_defaults import load_config
    from vtlearn.data.sources import resolve_data

    trainer = train.Trainer(resolve_data(load_config(args.config)), sharding.make_mesh())
    level = (train.init_compiler_options() or {}).get("xla_backend_optimization_level", 1)
    best = {lv: min(compile_seconds(trainer, lv) for _ in range(args.repeats))
            for lv in (level, 3)}
    print(f"{args.config}: init compiles in {best[level]:.1f} s at LLVM level {level} "
          f"(vtlearn), {best[3]:.1f} s at the default 3; ratio {best[3] / best[level]:.2f}x "
          f"(load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
