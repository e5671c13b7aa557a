"""The deep autoencoder benchmark of second-order optimisation (Hinton & Salakhutdinov 2006).

Hinton & Salakhutdinov's MNIST autoencoder is 784-1000-500-250-30 with the
mirrored decoder 30-250-500-1000-784: logistic (sigmoid) hidden units, a linear
30-unit code, and logistic outputs trained with binary cross-entropy against
pixel intensities in [0, 1]. Martens & Grosse (2015, K-FAC) and Amid, Anil &
Warmuth (2022, LocoProp) use it as their hard, badly conditioned benchmark;
K-FAC reports its cross-entropy.

Data. No MNIST ships with this package and nothing may be downloaded, so the
defaults run the full-size net (784 inputs) on scikit-learn's handwritten
digits upsampled from 8x8 to 28x28 (1,497 training images, real handwriting
but blurrier than MNIST, and 40x fewer examples). A prepared MNIST is used
when one exists locally: ``dataset="tfds:mnist"`` at ``image_size=28`` is the
original benchmark. Scaled variants with the same depth and halving-width
pattern (:data:`ENCODERS`) run on 8x8 and 16x16 images in seconds on a CPU.

Pixels. The embedded datasets are standardised; this family maps them back to
[0, 1] with the training split's minimum and maximum (an affine map, so the
digits' and MNIST's raw intensities are recovered exactly; for the noisy
procedural datasets, the noise sets the range) and clips the eval split to it.

The loss is the mean over batch and pixels of ``optax.sigmoid_binary_cross_entropy``
of the output logits; its reference (normaliser) is the loss of predicting
the training split's mean pixel everywhere. The network is a plain dense
stack, so it declares its ``tasks.dense`` structure (loss ``"sigmoid_xent"``)
for K-FAC and LocoProp.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from tasks import common, datasets, dense, image
from tasks.base import PRNGKey, TaskFamily
from tasks.datasets import ImageData
from tasks.dense import DenseLayer
from tasks.image import ImageTask
from tasks.registry import register_family

FAMILY = "deep_autoencoder"
CLASSIC = (1000, 500, 250, 30)  # Hinton & Salakhutdinov's encoder for 28x28 images
# Encoders by image size: the classic's depth, halving widths and narrow linear code,
# its first layer a little wider than the input (784 -> 1000) where the input is small.
ENCODERS = {8: (128, 64, 32, 8), 16: (256, 128, 64, 16), 28: CLASSIC}
# Hidden units the family allows: the classic's logistic units, tanh (zero-centred, the
# usual alternative in later optimiser benchmarks) and the other tasks.dense activations.
ACTIVATIONS = tuple(a for a in dense.ACTIVATION_NAMES if a != "linear")


@common.spec_dataclass(static=("dataset", "image_size", "hidden_sizes", "activation",
                               "batch_size"))
class DeepAutoencoderSpec:
  """Static: dataset, image_size, hidden_sizes, activation, batch_size. Leaves: init_scale,
  data_seed. ``hidden_sizes`` is the encoder; the decoder mirrors it, the last size is the
  linear code. The defaults are the classic net on 28x28 (upsampled) digits."""
  dataset: str = "digits"
  image_size: int = 28
  hidden_sizes: tuple[int, ...] = CLASSIC
  activation: str = "sigmoid"
  batch_size: int = 100
  init_scale: float = 1.0
  data_seed: int = 0


class DeepAutoencoder(nn.Module):
  """Images in [0, 1] -> per-pixel logits of the same shape."""
  hidden_sizes: tuple[int, ...]
  activation: str

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    shape = x.shape
    h = x.reshape((shape[0], -1))
    widths = (*self.hidden_sizes, *reversed(self.hidden_sizes[:-1]), h.shape[1])
    for layer, width in zip(self.dense_layers(), widths):
      h = dense.activation(layer.activation)(nn.Dense(width, name=layer.name)(h))
    return h.reshape(shape)

  def layer_order(self) -> list[str]:
    return common.dense_names(2 * len(self.hidden_sizes))

  def dense_layers(self) -> tuple[DenseLayer, ...]:
    """Encoder, linear code, mirrored decoder, then linear logits (the loss's sigmoid)."""
    return dense.mirrored_autoencoder(self.layer_order(), len(self.hidden_sizes),
                                      self.activation)


def unit_interval(data: ImageData) -> ImageData:
  """``data`` with pixels mapped to [0, 1] by the training split's range (eval clipped)."""
  lo, hi = jnp.min(data.train_x), jnp.max(data.train_x)
  scale = lambda x: jnp.clip((x - lo) / (hi - lo), 0.0, 1.0)
  return data._replace(train_x=scale(data.train_x), eval_x=scale(data.eval_x))


def _flat(batch: dict[str, jax.Array]) -> jax.Array:
  return batch["image"].reshape((batch["image"].shape[0], -1))


@common.task_dataclass()
class DeepAutoencoderTask(ImageTask):
  """Mean binary cross-entropy of the reconstruction logits against the [0, 1] pixels."""
  with_labels = False

  def loss(self, params: Any, key: PRNGKey, batch: dict[str, jax.Array]) -> jax.Array:
    del key
    x = batch["image"]
    return dense.output_loss("sigmoid_xent", self.apply(params, x), x)

  def reference_loss(self) -> jax.Array:
    # The loss of predicting the mean pixel m everywhere: the binary entropy of m. Read from
    # the data (a leaf), so stacked tasks each get their own.
    m = jnp.mean(self.data.train_x)
    return -(m * jnp.log(m) + (1.0 - m) * jnp.log1p(-m))

  def dense_structure(self) -> dense.DenseStructure:
    return dense.DenseStructure(self.model.dense_layers(), "sigmoid_xent", inputs=_flat,
                                targets=_flat)


def check_spec(spec: Any) -> None:
  common.check_spec_type(spec, DeepAutoencoderSpec, FAMILY)
  common.check(spec.activation in ACTIVATIONS, FAMILY,
               f"activation must be one of {list(ACTIVATIONS)}, got {spec.activation!r}")
  # The shared image checks validate the activation against common.ACTIVATIONS, which has
  # no sigmoid; the activation is checked above, so they see a stand-in.
  image.check_image_spec(dataclasses.replace(spec, activation="tanh"), DeepAutoencoderSpec,
                         FAMILY, widths="hidden_sizes", allow_empty_widths=False)


@register_family(FAMILY)
class DeepAutoencoderFamily(TaskFamily):
  """Ranges: dataset {digits, prototypes, shapes, blobs}, image_size {8, 16, 28} with its
  encoder from ENCODERS, activation {sigmoid, tanh}, batch {64, 128, 256}. Not in any
  meta-training distribution (tasks.sampler)."""
  spec_type = DeepAutoencoderSpec

  def sample(self, key: PRNGKey) -> DeepAutoencoderSpec:
    rng = common.host_rng(key)
    size = common.choice(rng, sorted(ENCODERS))
    return DeepAutoencoderSpec(
        dataset=common.choice(rng, datasets.IMAGE_DATASETS), image_size=size,
        hidden_sizes=ENCODERS[size], activation=common.choice(rng, ("sigmoid", "tanh")),
        batch_size=common.choice(rng, (64, 128, 256)), **common.sample_init_fields(rng))

  def build(self, spec: DeepAutoencoderSpec) -> DeepAutoencoderTask:
    check_spec(spec)
    return DeepAutoencoderTask(
        spec=spec, data=unit_interval(image.image_data(spec)),
        model=DeepAutoencoder(spec.hidden_sizes, spec.activation),
        label=f"{FAMILY}/{spec.dataset}{spec.image_size}/"
        f"{'x'.join(map(str, spec.hidden_sizes))}_{spec.activation}")

  def flops(self, spec: DeepAutoencoderSpec) -> float:
    d = spec.image_size**2 * image.channels_guess(spec.dataset)
    sizes = (d, *spec.hidden_sizes, *reversed(spec.hidden_sizes[:-1]), d)
    return common.TRAIN_STEP_FLOPS_FACTOR * spec.batch_size * common.mlp_flops(sizes)

  def example_spec(self) -> DeepAutoencoderSpec:
    """The 8x8 scaled variant: 64-128-64-32-8 and its mirror, on the 8x8 digits."""
    return DeepAutoencoderSpec(image_size=8, hidden_sizes=ENCODERS[8], batch_size=64)
