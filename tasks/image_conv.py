"""Small convolutional image classifiers (conv -> activation -> pool, global mean, dense)."""

from __future__ import annotations

import flax.linen as nn
import jax

from tasks import common, image
from tasks.base import PRNGKey, TaskFamily
from tasks.image import ImageClassifierTask
from tasks.registry import register_family

FAMILY = "image_conv"
POOLINGS = ("max", "avg", "none")


@common.spec_dataclass(static=("dataset", "image_size", "channels", "kernel_size", "pooling",
                               "activation", "batch_size"))
class ImageConvSpec:
  """Static: dataset, image_size, channels, kernel_size, pooling, activation, batch_size.
  Leaves: init_scale, data_seed."""
  dataset: str = "digits"
  image_size: int = 8
  channels: tuple[int, ...] = (8, 16)  # one conv layer per entry
  kernel_size: int = 3
  pooling: str = "max"  # 2x2 after each conv: max, avg, or none
  activation: str = "relu"
  batch_size: int = 32
  init_scale: float = 1.0
  data_seed: int = 0


class ConvNet(nn.Module):
  channels: tuple[int, ...]
  kernel_size: int
  pooling: str
  activation: str
  num_outputs: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    act = common.ACTIVATIONS[self.activation]
    for c in self.channels:
      x = act(nn.Conv(c, (self.kernel_size, self.kernel_size), padding="SAME")(x))
      if self.pooling != "none" and x.shape[1] >= 2:
        pool = nn.max_pool if self.pooling == "max" else nn.avg_pool
        x = pool(x, (2, 2), strides=(2, 2))
    return nn.Dense(self.num_outputs)(x.mean(axis=(1, 2)))

  def layer_order(self) -> list[str]:
    return [f"Conv_{i}" for i in range(len(self.channels))] + common.dense_names(1)


@register_family(FAMILY)
class ImageConvFamily(TaskFamily):
  """Ranges: dataset {digits, prototypes, shapes, blobs}, image_size {8, 16}, 1-3 layers of
  {4, 8, 16, 32} channels, kernel {3, 5}, pooling {max, avg, none}, batch {16, 32, 64}."""
  spec_type = ImageConvSpec

  def sample(self, key: PRNGKey) -> ImageConvSpec:
    rng = common.host_rng(key)
    depth = int(rng.integers(1, 4))
    return ImageConvSpec(
        **image.sample_image_fields(rng),
        channels=tuple(common.choice(rng, (4, 8, 16, 32)) for _ in range(depth)),
        kernel_size=common.choice(rng, (3, 5)),
        pooling=common.choice(rng, POOLINGS),
        activation=common.choice(rng, sorted(common.ACTIVATIONS)),
        batch_size=common.choice(rng, (16, 32, 64)),
        **common.sample_init_fields(rng))

  def build(self, spec: ImageConvSpec) -> ImageClassifierTask:
    image.check_image_spec(spec, ImageConvSpec, FAMILY, widths="channels",
                           allow_empty_widths=False)
    common.check_positive_ints(spec, FAMILY, ("kernel_size",))
    common.check(spec.pooling in POOLINGS, FAMILY,
                 f"pooling must be one of {list(POOLINGS)}, got {spec.pooling!r}")
    return ImageClassifierTask(
        spec=spec, data=image.image_data(spec),
        model=ConvNet(spec.channels, spec.kernel_size, spec.pooling, spec.activation,
                      image.num_classes(spec)),
        label=(f"{FAMILY}/{spec.dataset}{spec.image_size}/"
               f"c{'x'.join(map(str, spec.channels))}k{spec.kernel_size}{spec.pooling}"))

  def flops(self, spec: ImageConvSpec) -> float:
    size, c_in, total = spec.image_size, image.channels_guess(spec.dataset), 0.0
    for c in spec.channels:
      total += 2.0 * size * size * spec.kernel_size**2 * c_in * c
      c_in = c
      if spec.pooling != "none" and size >= 2:
        size //= 2
    total += 2.0 * c_in * 10
    return common.TRAIN_STEP_FLOPS_FACTOR * spec.batch_size * total

  def example_spec(self) -> ImageConvSpec:
    # One layer: convolutions (vmapped ones above all) are slow to compile on CPU.
    return ImageConvSpec(dataset="digits", image_size=8, channels=(8,), batch_size=32)
