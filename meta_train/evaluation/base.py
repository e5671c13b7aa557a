"""Types of the evaluation library: errors, run settings and the record of one run.

A *run* trains one task with one method (a learned optimizer or a baseline) for
one seed. Its record (:class:`RunRecord`) holds the training-loss curve
(window means of the minibatch loss), the eval-loss curve at a few points, the
wall time and the total number of steps it cost, tuning included. Records are
plain data so ``results.json`` can be written, read back and resumed.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import chex

PRNGKey = chex.PRNGKey
Params = Any
HParams = Any  # a pytree of float32 arrays, passed into jit as an argument


class EvalError(ValueError):
  """Raised for bad evaluation input; the message names the fix."""


class NotApplicable(EvalError):
  """A method that cannot run on a task by design (K-FAC or LocoProp on a conv net).

  The evaluation records the reason instead of a run and goes on; the report
  lists it, and the method's aggregates cover only the tasks it ran on.
  """


@dataclasses.dataclass(frozen=True)
class Setting:
  """What every run of an evaluation shares.

  Every run is cut into ``num_chunks`` equal segments of ``chunk`` steps (one
  compiled program per method and task, reused for every segment, seed and
  hparams value); evals and snapshots happen at segment ends.

  Attributes:
    num_steps: training steps per run (the horizon).
    num_points: points of the training curve; each is the mean minibatch loss
      over a window of ``num_steps / num_points`` steps.
    num_evals: points at which the eval loss is measured (evenly spaced, the
      last at ``num_steps``).
    eval_batches: eval batches averaged per eval point.
    speedup_cap: tuned Adam is run on for ``speedup_cap * num_steps`` steps to
      measure speedups; speedups are capped at this value.
    snapshot_cycles: cosine cycles (and snapshots) of the snapshot ensemble.
  """

  num_steps: int
  num_points: int = 50
  num_evals: int = 10
  eval_batches: int = 4
  speedup_cap: int = 4
  snapshot_cycles: int = 4

  @property
  def num_chunks(self) -> int:
    return math.lcm(self.num_evals, self.snapshot_cycles)

  @property
  def chunk(self) -> int:
    return self.num_steps // self.num_chunks

  def eval_steps(self) -> tuple[int, ...]:
    return tuple(self.num_steps * (i + 1) // self.num_evals for i in range(self.num_evals))

  def check(self) -> "Setting":
    """Raises :class:`EvalError` naming the fix for a bad value; returns self."""
    for f in ("num_steps", "num_points", "num_evals", "eval_batches", "speedup_cap",
              "snapshot_cycles"):
      v = getattr(self, f)
      if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise EvalError(f"{f} must be an int >= 1, got {v!r}.")
    if self.num_steps % self.num_chunks:
      raise EvalError(
          f"num_steps={self.num_steps} must be a multiple of lcm(num_evals={self.num_evals}, "
          f"snapshot_cycles={self.snapshot_cycles}) = {self.num_chunks}, so that evals and "
          f"snapshots fall on segment ends; e.g. --steps "
          f"{max(1, round(self.num_steps / self.num_chunks)) * self.num_chunks}.")
    if self.num_points > self.num_steps:
      raise EvalError(f"num_points={self.num_points} exceeds num_steps={self.num_steps}; "
                      "lower num_points.")
    return self


@dataclasses.dataclass
class RunRecord:
  """The result of one (task, method, seed) run; plain data (JSON-able).

  Attributes:
    train: training-curve points (window means), length ``num_points``.
    train_steps: the step at the end of each window.
    eval: eval loss at ``eval_steps``.
    eval_steps: steps at which ``eval`` was measured.
    steps: total training steps the method cost, tuning included.
    compile_s: seconds spent compiling.
    run_s: seconds spent running the compiled programs.
    extra: method-specific data (chosen LR, ensemble metrics, ...).
  """

  train: list[float]
  train_steps: list[int]
  eval: list[float]
  eval_steps: list[int]
  steps: int
  compile_s: float
  run_s: float
  extra: dict[str, Any] = dataclasses.field(default_factory=dict)

  def to_json(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_json(cls, d: dict[str, Any]) -> "RunRecord":
    return cls(**d)
