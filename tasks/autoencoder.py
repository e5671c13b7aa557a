"""MLP autoencoders on images: mean squared reconstruction error of standardised pixels."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from tasks import common, datasets
from tasks.base import PRNGKey, Split, Task, TaskFamily
from tasks.datasets import ImageData
from tasks.image import image_batch_spec, sample_image_batch
from tasks.image_mlp import check_activation, check_image_spec, check_widths, _channels_guess
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


@common.task_dataclass(static=("model", "label"))
class AutoencoderTask(Task):
  spec: AutoencoderSpec
  data: ImageData
  model: nn.Module
  label: str

  @property
  def name(self) -> str:
    return self.label

  @property
  def batch_spec(self) -> dict[str, jax.ShapeDtypeStruct]:
    return image_batch_spec(self.data, self.spec.batch_size, labels=False)

  def init(self, key: PRNGKey) -> dict[str, Any]:
    example = jnp.zeros((1, *self.data.train_x.shape[-3:]), jnp.float32)
    return common.scale_init(common.init_module(self.model, key, example), self.spec.init_scale)

  def loss(self, params: Any, key: PRNGKey, batch: dict[str, jax.Array]) -> jax.Array:
    del key
    x = batch["image"]
    return jnp.mean((self.model.apply({"params": params}, x) - x)**2)

  def sample_batch(self, key: PRNGKey, split: Split = "train") -> dict[str, jax.Array]:
    return sample_image_batch(self.data, key, split, self.spec.batch_size, labels=False)

  def reference_loss(self) -> float:
    # Predicting 0 (the training mean) for standardised pixels gives an MSE of ~1.
    return 1.0


@register_family(FAMILY)
class AutoencoderFamily(TaskFamily):
  """Ranges: dataset {digits, prototypes, shapes, blobs}, image_size {8, 16}, encoder of
  1-2 layers {32, 64, 128} and a bottleneck {4, 8, 16, 32}, activation as image_mlp,
  batch {16, 32, 64}."""
  spec_type = AutoencoderSpec
  static_fields = AutoencoderSpec.static_fields

  def sample(self, key: PRNGKey) -> AutoencoderSpec:
    rng = common.host_rng(key)
    depth = int(rng.integers(1, 3))
    hidden = tuple(common.choice(rng, (32, 64, 128)) for _ in range(depth))
    return AutoencoderSpec(
        dataset=common.choice(rng, datasets.IMAGE_DATASETS),
        image_size=common.choice(rng, (8, 8, 16)),
        hidden_sizes=hidden + (common.choice(rng, (4, 8, 16, 32)),),
        activation=common.choice(rng, sorted(common.ACTIVATIONS)),
        batch_size=common.choice(rng, (16, 32, 64)),
        init_scale=common.log_uniform(rng, 0.3, 3.0),
        data_seed=int(rng.integers(2**31)))

  def build(self, spec: AutoencoderSpec) -> AutoencoderTask:
    common.check_spec_type(spec, AutoencoderSpec, FAMILY)
    check_image_spec(spec, FAMILY)
    check_widths(spec.hidden_sizes, FAMILY, "hidden_sizes", allow_empty=False)
    check_activation(spec.activation, FAMILY)
    data = datasets.image_dataset(spec.dataset, spec.image_size, spec.data_seed)
    return AutoencoderTask(
        spec=spec, data=data, model=MLPAutoencoder(spec.hidden_sizes, spec.activation),
        label=f"{FAMILY}/{spec.dataset}{spec.image_size}/"
        f"{'x'.join(map(str, spec.hidden_sizes))}_{spec.activation}")

  def flops(self, spec: AutoencoderSpec) -> float:
    d = spec.image_size**2 * _channels_guess(spec.dataset)
    sizes = (d, *spec.hidden_sizes, *reversed(spec.hidden_sizes[:-1]), d)
    return common.TRAIN_STEP_FLOPS_FACTOR * spec.batch_size * common.mlp_flops(sizes)

  def example_spec(self) -> AutoencoderSpec:
    return AutoencoderSpec(dataset="digits", image_size=8, hidden_sizes=(32, 8))
