"""The task sampler, registry errors and a user-registered family."""

import dataclasses

import jax
import jax.numpy as jnp
import pytest

import tasks
from tasks import common, registry


@pytest.fixture(scope="module")
def draws():
  keys = jax.random.split(jax.random.key(0), 1000)
  return [tasks.sample_task(k) for k in keys]


def test_sample_task_draws_many_distinct_specs(draws):
  assert len({tasks.spec_to_json(spec) for _, spec in draws}) >= 900
  assert {name for name, _ in draws} == {n for n, _ in tasks.DISTRIBUTIONS["default"].weights}


def test_sampled_tasks_stay_under_the_cost_cap(draws):
  cap = tasks.get_distribution("default").max_flops
  for name, spec in draws:
    assert tasks.get_family(name).flops(spec) <= cap
    assert tasks.family_of(spec) == name


@pytest.mark.parametrize("dist", tasks.distributions())
def test_every_distribution_samples_under_its_cap(dist):
  d = tasks.get_distribution(dist)
  for k in jax.random.split(jax.random.key(1), 30):
    name, spec = tasks.sample_task(k, dist)
    assert tasks.get_family(name).flops(spec) <= d.max_flops


def test_sample_task_is_deterministic_by_key():
  assert tasks.sample_task(jax.random.key(5)) == tasks.sample_task(jax.random.key(5))


def test_unknown_family_lists_valid_names():
  with pytest.raises(tasks.TaskError, match="valid names: .*quadratic"):
    tasks.get_family("no_such_family")


def test_unknown_distribution_lists_valid_names():
  with pytest.raises(tasks.TaskError, match="default"):
    tasks.sample_task(jax.random.key(0), "no_such_distribution")


def test_duplicate_family_raises():
  with pytest.raises(tasks.TaskError, match="already registered"):
    tasks.register_family("quadratic")(type(tasks.get_family("quadratic")))


@pytest.mark.parametrize("name", tasks.families())
def test_a_spec_of_the_wrong_type_is_a_clear_error(name):
  with pytest.raises(tasks.TaskError, match=f"bad {name} spec"):
    tasks.get_family(name).build(object())


@pytest.mark.parametrize("family,spec,match", [
    ("quadratic", tasks.QuadraticSpec(dim=0), "dim"),
    ("quadratic", tasks.QuadraticSpec(conditioning=0.5), "conditioning"),
    ("image_mlp", tasks.ImageMLPSpec(dataset="nope"), "dataset"),
    ("image_mlp", tasks.ImageMLPSpec(activation="nope"), "activation"),
    ("image_conv", tasks.ImageConvSpec(pooling="nope"), "pooling"),
    ("rnn_lm", tasks.RNNLMSpec(cell="nope"), "cell"),
    ("rnn_lm", tasks.RNNLMSpec(dataset="stdlib_bytes", vocab_size=16), "vocab_size=256"),
    ("transformer_lm", tasks.TransformerLMSpec(width=30, num_heads=4), "divide"),
    ("vae", tasks.VAESpec(latent_size=0), "latent_size"),
    ("autoencoder", tasks.AutoencoderSpec(hidden_sizes=()), "hidden_sizes"),
])
def test_bad_spec_values_are_clear_errors(family, spec, match):
  with pytest.raises(tasks.TaskError, match=match):
    tasks.build_task(family, spec)


def test_spec_from_json_errors():
  with pytest.raises(tasks.TaskError, match="unknown task family"):
    tasks.spec_from_json('{"family": "nope", "spec": {}}')
  with pytest.raises(tasks.TaskError, match="unknown field"):
    tasks.spec_from_json('{"family": "quadratic", "spec": {"width": 3}}')
  with pytest.raises(tasks.TaskError, match="not a task-spec JSON"):
    tasks.spec_from_json("[1, 2]")


# A family defined outside tasks/, as a user would in their own module.
@common.spec_dataclass(static=("dim",))
class _LinearSpec:
  dim: int = 3
  init_scale: float = 1.0


@common.task_dataclass()
class _LinearTask(tasks.Task):
  spec: _LinearSpec

  name = property(lambda self: "user_linear")
  batch_spec = property(lambda self: {"x": jax.ShapeDtypeStruct((self.spec.dim,), jnp.float32)})

  def init(self, key):
    return {"w": self.spec.init_scale * jax.random.normal(key, (self.spec.dim,))}

  def loss(self, params, key, batch):
    del key
    return jnp.sum((params["w"] - batch["x"])**2)

  def sample_batch(self, key, split="train"):
    del split
    return {"x": jax.random.normal(key, (self.spec.dim,))}


class _LinearFamily(tasks.TaskFamily):
  spec_type = _LinearSpec  # static_fields come from it

  def sample(self, key):
    rng = common.host_rng(key)
    return _LinearSpec(dim=3, init_scale=float(rng.uniform(0.5, 2.0)))

  def build(self, spec):
    return _LinearTask(spec)

  def flops(self, spec):
    return 6.0 * spec.dim


@pytest.fixture
def user_family():
  tasks.register_family("user_linear")(_LinearFamily)
  yield "user_linear"
  registry._FAMILIES.pop("user_linear")  # keep the registry as other tests expect it


def test_a_user_family_joins_a_distribution(user_family):
  dist = tasks.Distribution.of({user_family: 1.0, "quadratic": 1.0}, max_flops=1e6)
  names = {tasks.sample_task(k, dist)[0] for k in jax.random.split(jax.random.key(0), 20)}
  assert names == {user_family, "quadratic"}
  spec = tasks.get_family(user_family).sample(jax.random.key(0))
  assert tasks.spec_from_json(tasks.spec_to_json(spec)) == spec
  task = tasks.build_task(user_family, spec)
  assert jnp.isfinite(task.loss(task.init(jax.random.key(0)), None, task.sample_batch(
      jax.random.key(1))))
  assert dataclasses.replace(spec, init_scale=1.0).init_scale == 1.0
