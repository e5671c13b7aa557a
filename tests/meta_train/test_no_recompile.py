"""The jitted outer step compiles once per task group: the job's loop never recompiles it.

Counted with jax's own compile events (``/jax/core/compile/backend_compile_duration``,
what ``jax_log_compiles`` reports), around every call of the real job's step
function, so a change of dtype, weak type, sharding or pytree structure between
what a step returns and what the next one receives shows up as a failure.
"""

import jax
from jax._src import dispatch

from meta_train import engine, train
from tests.meta_train import helpers


class _CompileCounter:

  def __init__(self):
    self.count = 0

  def __call__(self, event, duration, **kwargs):
    del duration, kwargs
    if event == dispatch.BACKEND_COMPILE_EVENT:
      self.count += 1


def test_outer_step_compiles_once_per_group(tmp_path, monkeypatch):
  counter = _CompileCounter()
  per_call = []
  real_jit = engine.jit_outer_step

  def counting_jit(*args, **kwargs):
    step = real_jit(*args, **kwargs)

    def counted(*a):
      before = counter.count
      out = step(*a)
      per_call.append(counter.count - before)
      return out

    return counted

  monkeypatch.setattr(engine, "jit_outer_step", counting_jit)
  c = helpers.load_config("tiny")
  # Two groups of quadratics with different dims: two programs, visited round-robin.
  c.outer_steps, c.num_groups, c.eval_every, c.checkpoint_every = 6, 2, 0, 3
  c.task_family = "quadratic"
  jax.monitoring.register_event_duration_secs_listener(counter)
  try:
    train.run(c, str(tmp_path))
  finally:
    jax.monitoring.unregister_event_duration_listener(counter)
  assert len(per_call) == 6
  assert per_call[0] >= 1, per_call
  # From the second round on (and on every step after the first of each group) nothing compiles.
  assert per_call[c.num_groups:] == [0] * (6 - c.num_groups), per_call
