"""Evaluate learned optimizers against hand-designed baselines on a task suite.

Parses flags and calls ``meta_train.evaluation.evaluate``; all logic lives there.
See docs/evaluation.md.

  python scripts/evaluate.py --optimizer mlp --optimizer demo=runs/demo/export/final \
      --tasks heldout --steps 1000 --seeds 3 --out eval_out/heldout --ablations

--import MODULE imports a task family (or architecture) defined outside the repo first.
NAME_OR_PATH is an architecture name (untrained theta), a pretrained name or a
file written by learned_opt.save (or a VeLO checkpoint); prefix LABEL= to name it.
"""

from __future__ import annotations

import argparse
import sys

from learned_opt import xla_cpu

xla_cpu.apply()  # before JAX starts its backend (learned_opt/xla_cpu.py)

from meta_train import evaluation as lo_eval  # noqa: E402
from meta_train import plugins  # noqa: E402


def parse(argv: list[str]) -> lo_eval.EvalConfig:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--optimizer", action="append", default=[], metavar="[LABEL=]NAME_OR_PATH",
                 help="a learned optimizer to evaluate; repeat for several")
  p.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                 help="a module or .py file to import first (a task family or learned "
                 "optimizer defined outside the repo); repeatable")
  p.add_argument("--tasks", required=True, metavar="SUITE_OR_NAMES",
                 help=f"comma-separated suites {lo_eval.suite_names()} and/or task families")
  p.add_argument("--steps", type=int, default=None,
                 help="steps per run (default: the suite's horizon)")
  p.add_argument("--seeds", type=int, default=3)
  p.add_argument("--out", required=True, help="output directory (resumes if it has results)")
  p.add_argument("--baselines", default="all",
                 help=f"comma-separated from {lo_eval.baseline_names()}, 'all' or 'none' "
                 "(adam_tuned always runs: every metric is relative to it)")
  p.add_argument("--ablations", action="store_true",
                 help="also run each learned optimizer with its loss / training-fraction / "
                 "momentum inputs zeroed")
  p.add_argument("--num-points", type=int, default=None,
                 help="points per training curve (default: 50, or one per step if fewer)")
  p.add_argument("--num-evals", type=int, default=10, help="eval-loss points per run")
  p.add_argument("--eval-batches", type=int, default=4)
  p.add_argument("--speedup-cap", type=int, default=4)
  p.add_argument("--snapshot-cycles", type=int, default=4)
  a = p.parse_args(argv)
  return lo_eval.EvalConfig(
      optimizers=tuple(a.optimizer), tasks=a.tasks, out=a.out, steps=a.steps, seeds=a.seeds,
      baselines=tuple(x.strip() for x in a.baselines.split(",") if x.strip()),
      ablations=a.ablations, num_points=a.num_points, num_evals=a.num_evals,
      eval_batches=a.eval_batches, speedup_cap=a.speedup_cap,
      snapshot_cycles=a.snapshot_cycles)


def main(argv: list[str]) -> int:
  try:
    plugins.import_all(plugins.scan_argv(argv))  # before --tasks and --optimizer are resolved
    lo_eval.evaluate(parse(argv), log=lambda s: print(s, flush=True))
  except (lo_eval.EvalError, plugins.PluginError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
