"""The task contract harness, parametrised over the registry: a new family is tested
automatically (as learned_optimization's smoketest_task, with the abstract batch)."""

import jax
import pytest

import tasks
import _task_harness as harness

FAMILIES = tasks.families()
# The families with a predictive distribution (Task.predict), by their architecture.
PREDICTING = {"image_mlp", "image_conv", "rnn_lm", "transformer_lm"}


@pytest.fixture(scope="module", params=FAMILIES)
def family_task(request):
  family = tasks.get_family(request.param)
  spec = family.example_spec()
  return request.param, spec, family.build(spec)


def test_init_and_loss_are_finite_and_eval_shape_works(family_task):
  name, _, task = family_task
  harness.check_init_and_loss(name, task)


def test_adam_lowers_the_loss(family_task):
  name, _, task = family_task
  harness.check_adam_lowers_the_loss(name, task)


@pytest.mark.parametrize("name", FAMILIES)
def test_spec_json_round_trip_is_exact(name):
  harness.check_spec_json_round_trip(name)


@pytest.mark.parametrize("name", FAMILIES)
def test_sampled_specs_build(name):
  harness.check_sampled_specs_build(name)


def test_vmap_across_specs_sharing_static_fields(family_task):
  name, spec, task = family_task
  harness.check_vmap_across_specs(name, spec, task)


def test_layer_order_and_predict_through_the_wrappers(family_task):
  name, _, task = family_task
  assert task.has_predictions == (name in PREDICTING), name
  harness.check_evaluation_members(task)
  order = task.layer_order(jax.eval_shape(task.init, jax.random.key(0)))
  for wrapped in harness.augmented_copies(task):
    assert wrapped.has_predictions == task.has_predictions
    harness.check_evaluation_members(wrapped)
    assert wrapped.layer_order(jax.eval_shape(wrapped.init, jax.random.key(0))) == order


@pytest.mark.parametrize("name,spec,order", [
    ("image_mlp", tasks.ImageMLPSpec(hidden_sizes=(8,) * 11),
     [f"Dense_{i}" for i in range(12)]),  # Dense_10 sorts before Dense_2: not the key order
    ("image_conv", tasks.ImageConvSpec(channels=(4, 4)), ["Conv_0", "Conv_1", "Dense_0"]),
    ("rnn_lm", tasks.RNNLMSpec(cell="gru"), ["Embed_0", "GRUCell_0", "Dense_0"]),
    ("transformer_lm", tasks.TransformerLMSpec(depth=2),
     ["Embed_0", "position", "Block_0", "Block_1", "LayerNorm_0", "Dense_0"]),
    ("autoencoder", tasks.AutoencoderSpec(hidden_sizes=(16, 4)),
     ["Dense_0", "Dense_1", "Dense_2", "Dense_3"]),
    ("vae", tasks.VAESpec(hidden_sizes=(16,)), [f"Dense_{i}" for i in range(5)]),
    ("quadratic", tasks.QuadraticSpec(dim=3), ["x"]),
])
def test_layer_order_follows_the_architecture(name, spec, order):
  task = tasks.build_task(name, spec)
  params = jax.eval_shape(task.init, jax.random.key(0))
  assert task.layer_order(params) == order


def test_stacking_tasks_with_different_static_fields_raises():
  a = tasks.build_task("quadratic", tasks.QuadraticSpec(dim=4))
  b = tasks.build_task("quadratic", tasks.QuadraticSpec(dim=5))
  with pytest.raises(tasks.TaskError, match="static"):
    tasks.stack_tasks([a, b])
