"""Evaluates a saved run without training: `python -m vtlearn.evaluate --workdir=DIR`.

Restores the run (`vtlearn.load`, latest checkpoint or `--step`), runs the
evaluators of its `config.evals` (or those named by `--evals`), prints the
metrics, appends them to `DIR/metrics.jsonl` and TensorBoard as split
"eval" at the checkpoint's step, and writes artefacts under `DIR/artefacts`.
`--set` changes evaluation settings (`evals.*`, `eval_batch_size`, `data.*`)
for this evaluation only, e.g. `--set evals.retrieval.files='/data/val-*.tfrecord'`.
A name in `--evals` that the run's config lacks adds that evaluator type with
its defaults, so any run can be probed by any evaluator, e.g. a MIL-NCE run's
groundability (`--evals=groundability`) or a benchmark:

  python -m vtlearn.evaluate --workdir=DIR --evals=youcook2,msrvtt \
      --set evals.youcook2.data_dir=/data/youcook2 --set evals.msrvtt.data_dir=/data/msrvtt

`--published=NAME:FILE[,FILE...]` evaluates a method's published weights
instead of a run (`vtlearn.methods.load_published`; `--evals` required,
`--workdir` optional: where metrics and artefacts go), e.g. the MIL-NCE
release: `--published=milnce_release:s3d_howto100m.pth,s3d_dict.npy`.
"""

from __future__ import annotations

import ast
import os
import sys

from absl import app, flags, logging

SETTABLE = ("evals.", "data.")


def apply_overrides(config, assignments) -> None:
    """Sets `KEY=VALUE` pairs (Python literals, else strings) on the evaluation keys.

    Raises:
      ValueError: for a key outside `evals.` / `data.` / `eval_batch_size` or one
        that does not exist.
    """
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        if not sep or not (key.startswith(SETTABLE) or key == "eval_batch_size"):
            raise ValueError(f"--set {assignment!r}: expected KEY=VALUE with KEY under "
                             "evals., data. or eval_batch_size")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        *parents, leaf = key.split(".")
        node = config
        for part in parents:
            node = node.get(part) if hasattr(node, "get") else None
        if node is None or not hasattr(node, "get") or leaf not in node:
            raise ValueError(f"--set {assignment!r}: config has no key {key}")
        try:
            node[leaf] = value
        except TypeError as e:
            raise ValueError(f"--set {assignment!r}: {e}") from None


def define_flags() -> None:
    """The command line's flags (defined when it runs, see `vtlearn.cli`)."""
    flags.DEFINE_string("workdir", None, "Run directory.")
    flags.DEFINE_string(
        "published", None, "NAME:FILE[,FILE...]: evaluate a method's published weights "
        "instead of a run's checkpoint, e.g. milnce_release:s3d_howto100m.pth,s3d_dict.npy")
    flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).")
    flags.DEFINE_list("evals", None, "Keys of config.evals to run (default: all).")
    flags.DEFINE_multi_string(
        "set", [], "KEY=VALUE under evals., data. or eval_batch_size, e.g. "
        "evals.probe.classifier=linear_svm")
    flags.register_multi_flags_validator(
        ["workdir", "published"], lambda f: bool(f["workdir"] or f["published"]),
        "--workdir is required (or --published)")


def main(argv):
    args = flags.FLAGS
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import vtlearn
    from vtlearn import metric_writers, sharding

    sharding.use_compilation_cache()
    from vtlearn.checkpointing import NoCheckpointError
    from vtlearn.data.pipeline import keep_tensorflow_on_host
    from vtlearn.evaluation.base import section

    keep_tensorflow_on_host()
    try:
        if args.published:
            name, sep, files = args.published.partition(":")
            if not sep or not files or not args.evals:
                raise app.UsageError("--published takes NAME:FILE[,FILE...] and needs --evals")
            from vtlearn.methods import load_published

            model = load_published(name, *files.split(","))
        else:
            model = vtlearn.load(args.workdir, step=args.step)
        for name in args.evals or ():
            if name not in model.config.evals:
                model.config.evals[name] = section(name, every=0)
        apply_overrides(model.config, args.set)
        metrics = model.evaluate(args.evals, workdir=args.workdir)
    except (NoCheckpointError, FileNotFoundError, ValueError) as e:
        sys.exit(f"vtlearn.evaluate: {e}")
    if args.workdir:
        writer = metric_writers.MetricWriter(args.workdir)
        writer.write(model.step, "eval", metrics)
        writer.close()
    logging.info("Evaluated %s at step %d.", args.workdir or args.published, model.step)
    for key, value in sorted(metrics.items()):
        print(f"{key}\t{value:.4g}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
