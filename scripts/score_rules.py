"""Score hand-designed LR-free rules and learned optimizers against per-task tuned Adam.

Command:
  python scripts/score_rules.py --suite val --rules prodigy,prodigy_cosine,dadapt_cosine,adam_tuned_lr_cosine
  python scripts/score_rules.py --suite heldout --optimizers 'mlp-demo-v0;{"step_scale":"distance","step_mult":1.0}'

The yardstick is meta-validation's (meta_train/evaluation/validation.py), at 500
steps, seed 0: tuned Adam is the best of 14 constant LRs per task, and every
rule is scored by ``metrics.against_reference``. ``--suite val`` is 8 tasks drawn
from the default distribution with key 777 (disjoint from meta-training's keys
and from the ``heldout`` suite); ``--suite recipe_val`` is the 6 tasks that
configs/adaptive_cpu.py and the recipes built on it validate on during
meta-training (``train.make_validator(c, 5, 6, 500)`` at seed 0; ``recipe_val:12``
is the 12 of configs/prodigy_cosine_cpu.py, a different draw); ``--suite
heldout`` is the committed suite, never used for selection, and ``--suite val_ood`` the
committed validation suite outside the training distribution (any committed suite works). An
optimizer is a pretrained name, a ``.lopt`` file, or a JSON dict of ``mlp``
hparams (its untrained init). ``adam_tuned_lr_cosine`` is an oracle: Adam at each
task's tuned LR with cosine decay to 0 (it shows what a schedule alone gives).
"""

import argparse
import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax

import learned_opt
import tasks
from meta_train.evaluation import baselines, metrics, optimizers, runner, suites, validation

RULES = {
    "prodigy": lambda n, lr: optax.contrib.prodigy(1.0),
    "prodigy_cosine": lambda n, lr: optax.contrib.prodigy(optax.cosine_decay_schedule(1.0, n)),
    "dadapt_cosine": lambda n, lr: optax.contrib.dadapt_adamw(optax.cosine_decay_schedule(1.0, n)),
    "adam_tuned_lr_cosine": lambda n, lr: optax.adam(optax.cosine_decay_schedule(lr, n)),
}


@dataclasses.dataclass(frozen=True)
class RuleTx:
  name: str

  def __call__(self, hparams, num_steps):
    return RULES[self.name](num_steps, hparams["lr"])


def task_list(suite: str):
  if suite == "val":
    return validation.held_out_tasks(jax.random.key(777), 8, distribution="default")
  kind, _, num = suite.partition(":")  # "recipe_val:12": prodigy_cosine_cpu's 12 tasks
  if kind == "recipe_val":  # the validator of adaptive_cpu and its heirs
    num = int(num or 6)
    return validation.held_out_tasks(jax.random.fold_in(jax.random.key(0), 5), num,
                                     distribution="default")
  built = (tasks.get_family(f).build(s) for f, s in suites.load_suite(suite).tasks)
  return [(t.name, t) for t in built]


def summary(label, rows, names, per_task=True):
  for name, r in zip(names if per_task else (), rows):
    print(f"  {name[:40]:<40} final {r['final']:.4g}  tuned Adam {r['adam_final']:.4g}  "
          f"speedup {r['speedup']:.2f}", flush=True)
  print(f"{label}: wins {sum(r['win'] for r in rows):g} of {len(rows)}, median speedup "
        f"{np.median([r['speedup'] for r in rows]):.2f}, mean log ratio "
        f"{np.mean([r['log_ratio'] for r in rows]):+.3f}, floored "
        f"{np.mean([r['floored_log_ratio'] for r in rows]):+.3f}", flush=True)
  # The same rows with every task family weighed alike, as meta-validation scores them.
  fam = validation.summarize([dict(r, task=n, norm_final=0.0, norm_adam_final=0.0)
                              for n, r in zip(names, rows)])
  print(f"{label}, families weighed alike: win rate {fam['val_family_win_rate']:.3f}, "
        f"floored {fam['val_family_floored_log_ratio']:+.3f}", flush=True)


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--suite", default="val")
  ap.add_argument("--steps", type=int, default=500)
  ap.add_argument("--rules", default="")
  ap.add_argument("--optimizers", default="", help="';'-separated (a JSON dict holds commas)")
  ap.add_argument("--per_task", action="store_true", help="print each task's final losses")
  args = ap.parse_args()
  setting = validation.setting(args.steps)
  tl = task_list(args.suite)
  refs = [baselines.adam_tuned(task, 0, setting).to_json() for _, task in tl]
  score = lambda rec, ref: metrics.against_reference(rec.train, rec.train_steps, ref, args.steps,
                                                     setting.speedup_cap)
  for rule in filter(None, args.rules.split(",")):
    rows = [score(runner.run(RuleTx(rule), {"lr": jnp.float32(ref["extra"]["lr"])}, task, 0,
                             setting).record, ref) for (_, task), ref in zip(tl, refs)]
    summary(rule, rows, [n for n, _ in tl], args.per_task)
  for spec in filter(None, args.optimizers.split(";")):
    if spec.startswith("{"):
      arch = learned_opt.get("mlp", **json.loads(spec))
      theta = arch.init_meta(jax.random.key(0))
    else:
      arch, theta = learned_opt.resolve(spec)
    rows = [score(optimizers.run_learned(arch, theta, task, 0, setting), ref)
            for (_, task), ref in zip(tl, refs)]
    summary(spec, rows, [n for n, _ in tl], args.per_task)


if __name__ == "__main__":
  main()
