"""The deep_autoencoder family (tasks/deep_autoencoder.py), beyond the registry-wide contract
tests: the classic architecture, the [0, 1] pixels, the loss and its reference."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tasks
from tasks import deep_autoencoder

FAMILY = tasks.get_family("deep_autoencoder")


def test_the_default_spec_is_the_classic_784_1000_500_250_30_net():
  task = FAMILY.build(tasks.DeepAutoencoderSpec())
  params = jax.eval_shape(task.init, jax.random.key(0))
  widths = [784, 1000, 500, 250, 30, 250, 500, 1000, 784]
  order = task.layer_order(params)
  assert [params[n]["kernel"].shape for n in order] == list(zip(widths[:-1], widths[1:]))
  acts = [l.activation for l in task.dense_structure().layers]
  # Logistic hidden units, a linear code and linear logits (the loss applies the sigmoid).
  assert acts == ["sigmoid"] * 3 + ["linear"] + ["sigmoid"] * 3 + ["linear"]
  assert task.dense_structure().loss == "sigmoid_xent"
  assert task.name == "deep_autoencoder/digits28/1000x500x250x30_sigmoid"
  assert FAMILY.flops(tasks.DeepAutoencoderSpec()) == 3.0 * 100 * sum(
      2 * a * b for a, b in zip(widths[:-1], widths[1:]))


def test_digit_pixels_are_their_raw_intensities_in_the_unit_interval():
  task = FAMILY.build(FAMILY.example_spec())  # 8x8 digits: no resize, intensities k / 16
  x = np.asarray(task.data.train_x, np.float64)
  assert x.min() == 0.0 and x.max() == 1.0
  np.testing.assert_allclose(x * 16, np.round(x * 16), atol=1e-4)
  ev = np.asarray(task.data.eval_x)
  assert ev.min() >= 0.0 and ev.max() <= 1.0


def test_the_reference_is_the_loss_of_predicting_the_mean_pixel():
  task = FAMILY.build(FAMILY.example_spec())
  params = jax.tree.map(jnp.zeros_like, task.init(jax.random.key(0)))
  m = jnp.mean(task.data.train_x)
  last = task.layer_order(params)[-1]
  params[last]["bias"] = jnp.full_like(params[last]["bias"], jnp.log(m / (1.0 - m)))
  everything = {"image": task.data.train_x}
  np.testing.assert_allclose(task.loss(params, jax.random.key(0), everything),
                             task.reference_loss(), rtol=1e-5)
  assert float(task.normalizer(task.reference_loss())) == pytest.approx(1.0)


def test_sampled_specs_use_the_scaled_encoders():
  for i in range(10):
    spec = FAMILY.sample(jax.random.key(i))
    assert spec.hidden_sizes == deep_autoencoder.ENCODERS[spec.image_size]
    assert spec.activation in ("sigmoid", "tanh")


@pytest.mark.parametrize("value", ["linear", "softplus", "sigmoid "])
def test_an_unknown_activation_is_refused_naming_the_valid_ones(value):
  spec = dataclasses.replace(FAMILY.example_spec(), activation=value)
  with pytest.raises(tasks.TaskError, match=r"activation must be one of \['relu', 'tanh', "
                     r"'sigmoid'"):
    FAMILY.build(spec)


@pytest.mark.parametrize("changes", [{"hidden_sizes": ()}, {"image_size": 100},
                                     {"dataset": "mnist"}, {"batch_size": 0}])
def test_the_shared_image_checks_apply(changes):
  with pytest.raises(tasks.TaskError, match="bad deep_autoencoder spec"):
    FAMILY.build(dataclasses.replace(FAMILY.example_spec(), **changes))
