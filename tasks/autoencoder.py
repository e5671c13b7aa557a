"""MLP autoencoders on images: mean squared reconstruction error of standardised pixels."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from tasks import common, dense, image
from tasks.base import PRNGKey, TaskFamily
from tasks.dense import DenseLayer
from tasks.image import ImageTask
from tasks.registry import register_family

FAMILY = "autoencoder"


@common.spec_dataclass(static=("dataset", "image_size", "hidden_sizes", "activation",
                               "batch_size"))
class AutoencoderSpec:
  """Static: dataset, image_size, hidden_sizes, activation, batch_size. Leaves: init_scale,
  data_seed. The decoder mirrors the encoder; the last hidden size is the bottleneck."""
  dataset: str = "digits"
  image_size: int = 8
  hidden_sizes: tuple[int, ...] = (32, 8)
  activation: str = "relu"
  batch_size: int = 32
  init_scale: float = 1.0
  data_seed: int = 0


class MLPAutoencoder(nn.Module):
  hidden_sizes: tuple[int, ...]
  activation: str

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    act = common.ACTIVATIONS[self.activation]
    shape = x.shape
    h = x.reshape((shape[0], -1))
    for i, width in enumerate(self.hidden_sizes):
      h = nn.Dense(width)(h)
      if i < len(self.hidden_sizes) - 1:  # a linear bottleneck
        h = act(h)
    for width in reversed(self.hidden_sizes[:-1]):
      h = act(nn.Dense(width)(h))
    return nn.Dense(x[0].size)(h).reshape(shape)

  def layer_order(self) -> list[str]:
    # The encoder's layers, the mirrored decoder's, then the output layer.
    return common.dense_names(2 * len(self.hidden_sizes))

  def dense_layers(self) -> tuple[DenseLayer, ...]:
    """The layers as ``tasks.dense`` describes them: a linear bottleneck and output."""
    return dense.mirrored_autoencoder(self.layer_order(), len(self.hidden_sizes),
                                      self.activation)


@common.task_dataclass()
class AutoencoderTask(ImageTask):
  """Mean squared error of ``model``'s reconstruction of the (standardised) images."""
  with_labels = False

  def loss(self, params: Any, key: PRNGKey, batch: dict[str, jax.Array]) -> jax.Array:
    del key
    x = batch["image"]
    return jnp.mean((self.apply(params, x) - x)**2)

  def reference_loss(self) -> float:
    # Predicting 0 (the training mean) for standardised pixels gives an MSE of ~1.
    return 1.0

  def dense_structure(self) -> dense.DenseStructure:
    flat = lambda batch: batch["image"].reshape((batch["image"].shape[0], -1))
    return dense.DenseStructure(self.model.dense_layers(), "mse", inputs=flat, targets=flat)


@register_family(FAMILY)
class AutoencoderFamily(TaskFamily):
  """Ranges: dataset {digits, prototypes, shapes, blobs}, image_size {8, 16}, encoder of
  1-2 layers {32, 64, 128} and a bottleneck {4, 8, 16, 32}, activation as image_mlp,
  batch {16, 32, 64}."""
  spec_type = AutoencoderSpec

  def sample(self, key: PRNGKey) -> AutoencoderSpec:
    rng = common.host_rng(key)
    depth = int(rng.integers(1, 3))
    hidden = tuple(common.choice(rng, (32, 64, 128)) for _ in range(depth))
    return AutoencoderSpec(
        **image.sample_image_fields(rng),
        hidden_sizes=hidden + (common.choice(rng, (4, 8, 16, 32)),),
        activation=common.choice(rng, sorted(common.ACTIVATIONS)),
        batch_size=common.choice(rng, (16, 32, 64)),
        **common.sample_init_fields(rng))

  def build(self, spec: AutoencoderSpec) -> AutoencoderTask:
    image.check_image_spec(spec, AutoencoderSpec, FAMILY, widths="hidden_sizes",
                           allow_empty_widths=False)
    return AutoencoderTask(
        spec=spec, data=image.image_data(spec),
        model=MLPAutoencoder(spec.hidden_sizes, spec.activation),
        label=f"{FAMILY}/{spec.dataset}{spec.image_size}/"
        f"{'x'.join(map(str, spec.hidden_sizes))}_{spec.activation}")

  def flops(self, spec: AutoencoderSpec) -> float:
    d = spec.image_size**2 * image.channels_guess(spec.dataset)
    sizes = (d, *spec.hidden_sizes, *reversed(spec.hidden_sizes[:-1]), d)
    return common.TRAIN_STEP_FLOPS_FACTOR * spec.batch_size * common.mlp_flops(sizes)

  def example_spec(self) -> AutoencoderSpec:
    return AutoencoderSpec(dataset="digits", image_size=8, hidden_sizes=(32, 8))
