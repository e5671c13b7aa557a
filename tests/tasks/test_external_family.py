"""The family module that docs/tasks.md walks through works from outside the package.

The test takes the block marked ``<!-- example: my_family.py -->`` from the page,
writes it to a temporary directory, imports it from there as ``my_family`` and
runs the contract harness on it, so the documented example cannot rot.
"""

import importlib
import os
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import tasks
from tasks import registry, sampler
import _task_harness as harness

DOC = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "tasks.md")
_EXAMPLE = re.compile(r"<!-- example: my_family\.py -->\s*\n```python\n(.*?)```", re.S)


def example_module_source() -> str:
  if not os.path.exists(DOC):
    pytest.skip("docs/tasks.md is not in this checkout")
  with open(DOC) as f:
    match = _EXAMPLE.search(f.read())
  assert match, "docs/tasks.md lost its `<!-- example: my_family.py -->` python block"
  return match.group(1)


@pytest.fixture
def my_family(tmp_path, monkeypatch):
  """Imports the example as a module of its own, into copies of the registries.

  A name registers once per process, and the docs test may already have run this
  block; the copies keep the registrations of this import from leaking into (or
  clashing with) the rest of the session.
  """
  (tmp_path / "my_family.py").write_text(example_module_source())
  monkeypatch.syspath_prepend(str(tmp_path))
  monkeypatch.delitem(sys.modules, "my_family", raising=False)
  monkeypatch.setattr(registry, "_FAMILIES",
                      {k: v for k, v in registry._FAMILIES.items() if k != "my_family"})
  monkeypatch.setattr(sampler, "DISTRIBUTIONS",
                      {k: v for k, v in sampler.DISTRIBUTIONS.items() if k != "my_mix"})
  module = importlib.import_module("my_family")
  yield module
  sys.modules.pop("my_family", None)


def test_the_example_registers_from_outside_the_package(my_family):
  assert os.path.basename(my_family.__file__) == "my_family.py"
  assert not my_family.__file__.startswith(os.path.dirname(tasks.__file__))
  assert "my_family" in tasks.families()
  assert "my_mix" in tasks.distributions()
  family = tasks.get_family("my_family")
  assert family.static_fields == ("dim", "num_classes", "batch_size")
  with pytest.raises(tasks.TaskError, match="already registered"):
    tasks.register_family("my_family")(type(family))


def test_the_example_passes_the_contract_harness(my_family):
  del my_family
  family = tasks.get_family("my_family")
  spec = family.example_spec()
  task = family.build(spec)
  harness.check_init_and_loss("my_family", task)
  harness.check_adam_lowers_the_loss("my_family", task)
  harness.check_spec_json_round_trip("my_family")
  harness.check_sampled_specs_build("my_family")
  harness.check_vmap_across_specs("my_family", spec, task)
  harness.check_evaluation_members(task)
  for wrapped in harness.augmented_copies(task):
    harness.check_evaluation_members(wrapped)
  with pytest.raises(tasks.TaskError, match="bad my_family spec"):
    family.build(object())
  name, _ = tasks.sample_task(jax.random.key(0), tasks.Distribution.of({"my_family": 1.0}, 1e9))
  assert name == "my_family"


def test_optax_adam_trains_the_example(my_family):
  del my_family
  task = tasks.build_task("my_family")
  opt = optax.adam(1e-2)

  @jax.jit
  def step(task, params, state, key):
    loss, grads = jax.value_and_grad(task.loss)(params, key, task.sample_batch(key))
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state, loss

  # optax 0.2.8's Adam mixes a Python float with its int32 step count, which the
  # tests' strict dtype promotion (tests/conftest.py) rejects.
  with jax.numpy_dtype_promotion("standard"):
    params = task.init(jax.random.key(0))
    state = opt.init(params)
    losses = []
    for key in jax.random.split(jax.random.key(1), 50):
      params, state, loss = step(task, params, state, key)
      losses.append(float(loss))
  losses = np.asarray(losses)
  assert np.all(np.isfinite(losses))
  assert losses[-10:].mean() < 0.8 * losses[:5].mean(), losses
  logits, labels = task.predict(params, task.sample_batch(jax.random.key(2), "eval"))
  accuracy = float(jnp.mean((jnp.argmax(logits, -1) == labels).astype(jnp.float32)))
  assert accuracy > 1.0 / task.spec.num_classes  # better than chance
