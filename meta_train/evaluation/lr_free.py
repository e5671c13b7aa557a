"""Learning-rate-free baselines from ``optax.contrib``, each run once, untuned.

These methods estimate their own step size, so they get no LR grid: one run at
the defaults, budget "1 run (none)". As researchers use them, most are run
with a cosine decay from 1 to 0 over the run, passed as the method's
``learning_rate`` (its multiplier on the estimated step, like a PyTorch LR
scheduler on Prodigy; scripts/score_rules.py measures Prodigy so).
As in the reference implementations, it also enters the step-size estimates of
Prodigy and D-Adaptation, and D-Adaptation applies it to the gradient entering
its momentum, so its step fades out over the momentum's timescale (~10 steps)
rather than exactly at the end.

Schedule-free AdamW trains at the interpolated point ``y`` and evaluates the
average ``x`` (``optax.contrib.schedule_free_eval_params``). The runner carries
and evaluates the params the optimizer steps, i.e. ``y``: so the training curve
(the one every score uses) is the loss at the gradient's point, as it must be,
and the eval curve is at ``y`` too, which typically understates schedule-free
(``x`` is the better point to evaluate); the record says so in ``extra``.
Evaluating ``x`` needs an eval-params hook in the runner.

References: Mishchenko & Defazio 2024 (Prodigy); Defazio & Mishchenko 2023
(D-Adaptation); Ivgi, Hinder & Carmon 2023 (DoG); Cutkosky, Defazio & Mehta
2023 (Mechanic); Defazio et al. 2024 (schedule-free).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import optax

from meta_train.evaluation import runner
from meta_train.evaluation.base import HParams, RunRecord, Setting
from meta_train.evaluation.baselines import register_baseline

NO_TUNING = "1 run (none)"


@dataclasses.dataclass(frozen=True)
class Untuned:
  """A ``make_tx`` without hyperparameters: ``build(num_steps) -> optax transform``.

  ``build`` is a module-level function, so the dataclass hashes stably and one
  compiled program serves every seed.
  """
  build: Callable[[int], optax.GradientTransformation]

  def __call__(self, hparams: HParams, num_steps: int) -> optax.GradientTransformation:
    del hparams
    return self.build(num_steps)


def cosine(num_steps: int) -> optax.Schedule:
  """1 at step 0 to 0 at ``num_steps``."""
  return optax.cosine_decay_schedule(1.0, num_steps)


def run_untuned(build: Callable[[int], optax.GradientTransformation], task: Any, seed: int,
                setting: Setting) -> RunRecord:
  return runner.run(Untuned(build), {}, task, seed, setting).record


def _prodigy(num_steps: int) -> optax.GradientTransformation:
  del num_steps
  return optax.contrib.prodigy()


def _prodigy_cosine(num_steps: int) -> optax.GradientTransformation:
  return optax.contrib.prodigy(cosine(num_steps))


def _dadapt_adamw_cosine(num_steps: int) -> optax.GradientTransformation:
  return optax.contrib.dadapt_adamw(cosine(num_steps))


def _dog_cosine(num_steps: int) -> optax.GradientTransformation:
  return optax.contrib.dog(cosine(num_steps))


def _mechanic(num_steps: int) -> optax.GradientTransformation:
  del num_steps
  # Mechanic learns the scale of its base optimizer's step; its docs set the base LR to 1.
  return optax.contrib.mechanize(optax.adam(1.0))


def _schedule_free_adamw(num_steps: int) -> optax.GradientTransformation:
  del num_steps
  return optax.contrib.schedule_free_adamw()


@register_baseline("prodigy", "Prodigy (optax.contrib.prodigy defaults: betas .9/.999, "
                   "d0 1e-6), constant LR multiplier 1", NO_TUNING)
def prodigy(task: Any, seed: int, setting: Setting) -> RunRecord:
  return run_untuned(_prodigy, task, seed, setting)


@register_baseline("prodigy_cosine", "Prodigy (optax.contrib.prodigy defaults), LR multiplier "
                   "cosine-decayed from 1 to 0 over the run", NO_TUNING)
def prodigy_cosine(task: Any, seed: int, setting: Setting) -> RunRecord:
  return run_untuned(_prodigy_cosine, task, seed, setting)


@register_baseline("dadapt_adamw_cosine", "D-Adaptation AdamW (optax.contrib.dadapt_adamw "
                   "defaults), LR multiplier cosine-decayed from 1 to 0", NO_TUNING)
def dadapt_adamw_cosine(task: Any, seed: int, setting: Setting) -> RunRecord:
  return run_untuned(_dadapt_adamw_cosine, task, seed, setting)


@register_baseline("dog_cosine", "DoG, distance over gradients (optax.contrib.dog defaults: "
                   "init_step ('heuristic', 1e-6)), LR multiplier cosine-decayed from 1 to 0",
                   NO_TUNING)
def dog_cosine(task: Any, seed: int, setting: Setting) -> RunRecord:
  return run_untuned(_dog_cosine, task, seed, setting)


@register_baseline("mechanic", "Mechanic (optax.contrib.mechanize defaults) around Adam "
                   "(b1=.9, b2=.999) at base LR 1, constant", NO_TUNING)
def mechanic(task: Any, seed: int, setting: Setting) -> RunRecord:
  return run_untuned(_mechanic, task, seed, setting)


@register_baseline("schedule_free_adamw", "Schedule-free AdamW (optax.contrib.schedule_free_adamw "
                   "defaults: LR 2.5e-3, b1 .9, no warmup); losses at the training point y",
                   NO_TUNING)
def schedule_free_adamw(task: Any, seed: int, setting: Setting) -> RunRecord:
  rec = run_untuned(_schedule_free_adamw, task, seed, setting)
  rec.extra["eval_params"] = ("y, the gradient's point: the runner has no hook for "
                              "schedule_free_eval_params' average x")
  return rec
