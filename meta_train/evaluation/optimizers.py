"""Learned optimizers under evaluation: resolving ``--optimizer`` and the input ablations.

``NAME_OR_PATH`` is an architecture name (its untrained ``init_meta(key(0))``
theta), a shipped pretrained name, or a file (``learned_opt.save`` or a VeLO
checkpoint); ``LABEL=NAME_OR_PATH`` names it in the report.

Ablations zero one group of the optimizer's inputs **from outside**, without
touching learned_opt's internals, by wrapping the transform:

* ``no_loss``: ``update(..., value=1.0)``: a constant loss, so every loss
  feature is constant;
* ``no_fraction``: ``num_steps = 2**30``, so the training fraction stays ~0;
* ``no_momenta``: the momentum accumulators in the state are zeroed before
  each update, so the momentum features carry only the current gradient
  (``(1 - beta) g``), no history. Only for states with ``moments.mom``
  (``mlp``, ``hyper_lstm``); for others it is reported as not applicable.

All variants of one optimizer share one compiled program: the switches are
jit arguments (``hparams``), not Python flags.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax

import learned_opt
from meta_train.evaluation import runner
from meta_train.evaluation.base import EvalError, HParams, RunRecord, Setting

ABLATIONS = ("no_loss", "no_fraction", "no_momenta")
_HUGE_HORIZON = 2**30


@dataclasses.dataclass(frozen=True)
class LearnedOptimizerSpec:
  """A resolved ``--optimizer``: label, architecture, theta and where it came from."""
  label: str
  arch: Any
  theta: Any = dataclasses.field(compare=False, repr=False)
  source: str


_SOURCE = {"architecture": "architecture {!r}, untrained (init_meta(key(0)))",
           "pretrained": "pretrained {!r}", "file": "file {!r}"}


def resolve(arg: str) -> LearnedOptimizerSpec:
  """Turns ``[LABEL=]NAME_OR_PATH`` into a :class:`LearnedOptimizerSpec` through
  ``learned_opt.resolve`` (the one front door for weights); fails naming the fix."""
  label, _, target = arg.rpartition("=") if "=" in arg else ("", "", arg)
  try:
    kind = learned_opt.weights.kind(target)
  except learned_opt.LearnedOptimizerError as e:
    raise EvalError(f"unknown optimizer {arg!r}: not an architecture, not a pretrained name "
                    f"and no such file. {e}") from None
  try:
    arch, theta = learned_opt.resolve(target)
  except learned_opt.LearnedOptimizerError as e:
    raise EvalError(f"--optimizer {arg!r}: {e}") from None
  source = _SOURCE[kind].format(target) + (f" ({arch.name})" if kind == "file" else "")
  return LearnedOptimizerSpec(label or target, arch, theta, source)


def supports_momenta_ablation(spec: LearnedOptimizerSpec) -> bool:
  params = {"w": jnp.zeros((2, 2), jnp.float32)}
  state = jax.eval_shape(spec.arch.as_optax(spec.theta, num_steps=1).init, params)
  return hasattr(state, "moments") and hasattr(state.moments, "mom")


def _zero_momenta(state: Any, keep: jax.Array) -> Any:
  if not (hasattr(state, "moments") and hasattr(state.moments, "mom")):
    return state
  mom = tuple(m * keep.astype(m.dtype) for m in state.moments.mom)
  return state._replace(moments=state.moments._replace(mom=mom))


def ablated(tx: optax.GradientTransformationExtraArgs, loss_on: jax.Array,
            mom_on: jax.Array) -> optax.GradientTransformationExtraArgs:
  """Wraps ``tx``: a constant loss where ``loss_on == 0``; zeroed momenta where ``mom_on == 0``."""

  def update_fn(updates, state, params=None, *, value=None, **extra):
    value = jnp.where(loss_on > 0, value, jnp.ones_like(value))
    return tx.update(updates, _zero_momenta(state, mom_on), params, value=value, **extra)

  return optax.GradientTransformationExtraArgs(tx.init, update_fn)


@dataclasses.dataclass(frozen=True)
class LearnedTx:
  """``make_tx`` of a learned optimizer: ``hparams`` holds theta and the ablation switches."""
  arch: Any

  def __call__(self, hparams: HParams, num_steps: int) -> optax.GradientTransformationExtraArgs:
    horizon = jnp.where(hparams["fraction_on"] > 0, num_steps, _HUGE_HORIZON).astype(jnp.int32)
    tx = self.arch.as_optax(hparams["theta"], num_steps=horizon)
    return ablated(tx, hparams["loss_on"], hparams["mom_on"])


def hparams_for(spec: LearnedOptimizerSpec, ablation: str | None) -> HParams:
  """theta plus the switches; ``ablation`` is one of :data:`ABLATIONS` or ``None``."""
  if ablation not in (None, *ABLATIONS):
    raise EvalError(f"unknown ablation {ablation!r}; valid: {list(ABLATIONS)}.")
  on = lambda name: jnp.float32(ablation != name)
  return {"theta": spec.theta, "loss_on": on("no_loss"), "fraction_on": on("no_fraction"),
          "mom_on": on("no_momenta")}


def run_learned(arch: Any, theta: Any, task: Any, seed: int, setting: Setting, *,
                ablation: str | None = None) -> RunRecord:
  """Trains ``task`` with ``arch.as_optax(theta)`` (optionally ablated) for one seed.

  The one way a learned optimizer is run for evaluation: the benchmark, the
  meta-validation that picks ``export/best`` and the main job's table all call it,
  so they see the same program, batches and initial parameters as every baseline.
  """
  spec = LearnedOptimizerSpec("", arch, theta, "")
  return runner.run(LearnedTx(arch), hparams_for(spec, ablation), task, seed, setting).record
