"""MLP image classifiers, the bulk of VeLO's task distribution (Metz et al. 2022, "VeLO")."""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax

from tasks import common, datasets
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


def check_image_spec(spec, family: str) -> None:
  """Checks the fields every image family shares."""
  common.check(spec.dataset in datasets.IMAGE_DATASETS or datasets.is_tfds(spec.dataset), family,
               f"dataset must be one of {list(datasets.IMAGE_DATASETS)} or 'tfds:<name>', "
               f"got {spec.dataset!r}")
  common.check(isinstance(spec.image_size, int) and 4 <= spec.image_size <= 64, family,
               f"image_size must be an int in [4, 64], got {spec.image_size!r}")
  common.check(isinstance(spec.batch_size, int) and spec.batch_size >= 1, family,
               f"batch_size must be a positive int, got {spec.batch_size!r}")
  common.check(spec.init_scale > 0, family, f"init_scale must be > 0, got {spec.init_scale!r}")


def check_widths(widths, family: str, field: str, *, allow_empty: bool = True) -> None:
  common.check(isinstance(widths, tuple) and (allow_empty or widths)
               and all(isinstance(w, int) and w >= 1 for w in widths), family,
               f"{field} must be a tuple of positive ints, got {widths!r}")


def check_activation(activation: str, family: str) -> None:
  common.check(activation in common.ACTIVATIONS, family,
               f"activation must be one of {sorted(common.ACTIVATIONS)}, got {activation!r}")


@register_family(FAMILY)
class ImageMLPFamily(TaskFamily):
  """Ranges: dataset {digits, prototypes, shapes, blobs}, image_size {8, 16}, depth 1-3 of
  width {16, 32, 64, 128}, activation {relu, tanh, gelu, elu, swish}, batch {16..128},
  init_scale log-uniform [0.3, 3]."""
  spec_type = ImageMLPSpec
  static_fields = ImageMLPSpec.static_fields

  def sample(self, key: PRNGKey) -> ImageMLPSpec:
    rng = common.host_rng(key)
    depth = int(rng.integers(1, 4))
    return ImageMLPSpec(
        dataset=common.choice(rng, datasets.IMAGE_DATASETS),
        image_size=common.choice(rng, (8, 8, 16)),
        hidden_sizes=tuple(common.choice(rng, (16, 32, 64, 128)) for _ in range(depth)),
        activation=common.choice(rng, sorted(common.ACTIVATIONS)),
        batch_size=common.choice(rng, (16, 32, 64, 128)),
        init_scale=common.log_uniform(rng, 0.3, 3.0),
        data_seed=int(rng.integers(2**31)))

  def build(self, spec: ImageMLPSpec) -> ImageClassifierTask:
    common.check_spec_type(spec, ImageMLPSpec, FAMILY)
    check_image_spec(spec, FAMILY)
    check_widths(spec.hidden_sizes, FAMILY, "hidden_sizes")
    check_activation(spec.activation, FAMILY)
    info = datasets.image_info(spec.dataset)
    data = datasets.image_dataset(spec.dataset, spec.image_size, spec.data_seed)
    widths = "x".join(map(str, spec.hidden_sizes)) or "linear"
    return ImageClassifierTask(
        spec=spec, data=data,
        model=MLP(spec.hidden_sizes, spec.activation, info.num_classes),
        label=f"{FAMILY}/{spec.dataset}{spec.image_size}/{widths}_{spec.activation}",
        num_classes=info.num_classes)

  def flops(self, spec: ImageMLPSpec) -> float:
    num_inputs = spec.image_size**2 * _channels_guess(spec.dataset)
    sizes = (num_inputs, *spec.hidden_sizes, 10)
    return common.TRAIN_STEP_FLOPS_FACTOR * spec.batch_size * common.mlp_flops(sizes)

  def example_spec(self) -> ImageMLPSpec:
    return ImageMLPSpec(dataset="digits", image_size=8, hidden_sizes=(32,), batch_size=32)


def _channels_guess(dataset: str) -> int:
  # The cost model must not load data (or tfds metadata): assume RGB for tfds.
  return 3 if datasets.is_tfds(dataset) else 1
