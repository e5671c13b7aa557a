"""MLP image classifiers, the bulk of VeLO's task distribution (Metz et al. 2022, "VeLO")."""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax

from tasks import common, image
from tasks.dense import DenseLayer
from tasks.base import PRNGKey, TaskFamily
from tasks.image import ImageClassifierTask
from tasks.registry import register_family

FAMILY = "image_mlp"


@common.spec_dataclass(
    static=("dataset", "image_size", "hidden_sizes", "activation", "batch_size"))
class ImageMLPSpec:
  """Static: dataset, image_size, hidden_sizes, activation, batch_size. Leaves: init_scale,
  data_seed."""
  dataset: str = "digits"  # see tasks.datasets: digits, prototypes, shapes, blobs, tfds:<name>
  image_size: int = 8
  hidden_sizes: tuple[int, ...] = (32,)
  activation: str = "relu"
  batch_size: int = 32
  init_scale: float = 1.0  # multiplies flax's default weight init
  data_seed: int = 0  # draws the procedural dataset / the train-eval shuffle


class MLP(nn.Module):
  hidden_sizes: tuple[int, ...]
  activation: str
  num_outputs: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    act: Callable[[jax.Array], jax.Array] = common.ACTIVATIONS[self.activation]
    x = x.reshape((x.shape[0], -1))
    for width in self.hidden_sizes:
      x = act(nn.Dense(width)(x))
    return nn.Dense(self.num_outputs)(x)

  def layer_order(self) -> list[str]:
    return common.dense_names(len(self.hidden_sizes) + 1)

  def dense_layers(self) -> tuple[DenseLayer, ...]:
    """The layers as ``tasks.dense`` describes them (K-FAC, LocoProp); the logits are linear."""
    acts = (self.activation,) * len(self.hidden_sizes) + ("linear",)
    return tuple(DenseLayer(n, a) for n, a in zip(self.layer_order(), acts))


@register_family(FAMILY)
class ImageMLPFamily(TaskFamily):
  """Ranges: dataset {digits, prototypes, shapes, blobs}, image_size {8, 16}, depth 1-3 of
  width {16, 32, 64, 128}, activation {relu, tanh, gelu, elu, swish}, batch {16..128},
  init_scale log-uniform [0.3, 3]."""
  spec_type = ImageMLPSpec

  def sample(self, key: PRNGKey) -> ImageMLPSpec:
    rng = common.host_rng(key)
    depth = int(rng.integers(1, 4))
    return ImageMLPSpec(
        **image.sample_image_fields(rng),
        hidden_sizes=tuple(common.choice(rng, (16, 32, 64, 128)) for _ in range(depth)),
        activation=common.choice(rng, sorted(common.ACTIVATIONS)),
        batch_size=common.choice(rng, (16, 32, 64, 128)),
        **common.sample_init_fields(rng))

  def build(self, spec: ImageMLPSpec) -> ImageClassifierTask:
    image.check_image_spec(spec, ImageMLPSpec, FAMILY, widths="hidden_sizes")
    widths = "x".join(map(str, spec.hidden_sizes)) or "linear"
    return ImageClassifierTask(
        spec=spec, data=image.image_data(spec),
        model=MLP(spec.hidden_sizes, spec.activation, image.num_classes(spec)),
        label=f"{FAMILY}/{spec.dataset}{spec.image_size}/{widths}_{spec.activation}")

  def flops(self, spec: ImageMLPSpec) -> float:
    num_inputs = spec.image_size**2 * image.channels_guess(spec.dataset)
    sizes = (num_inputs, *spec.hidden_sizes, 10)
    return common.TRAIN_STEP_FLOPS_FACTOR * spec.batch_size * common.mlp_flops(sizes)

  def example_spec(self) -> ImageMLPSpec:
    return ImageMLPSpec(dataset="digits", image_size=8, hidden_sizes=(32,), batch_size=32)

