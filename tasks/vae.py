"""MLP variational autoencoders (Kingma & Welling 2014, "Auto-Encoding Variational Bayes").

The loss is the negative ELBO per pixel with a unit-variance Gaussian decoder:
``(1/2 ||x - decode(z)||^2 + KL(q(z|x) || N(0, I))) / num_pixels``, with
``z = mu + sigma * eps`` and ``eps`` drawn from the loss's key.
"""

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

FAMILY = "vae"


@common.spec_dataclass(static=("dataset", "image_size", "hidden_sizes", "latent_size",
                               "activation", "batch_size"))
class VAESpec:
  """Static: dataset, image_size, hidden_sizes, latent_size, activation, batch_size.
  Leaves: init_scale, data_seed."""
  dataset: str = "digits"
  image_size: int = 8
  hidden_sizes: tuple[int, ...] = (64,)  # encoder; the decoder mirrors it
  latent_size: int = 8
  activation: str = "relu"
  batch_size: int = 32
  init_scale: float = 1.0
  data_seed: int = 0


class VAE(nn.Module):
  hidden_sizes: tuple[int, ...]
  latent_size: int
  activation: str

  @nn.compact
  def __call__(self, x: jax.Array, eps: jax.Array) -> jax.Array:
    """Returns the per-example negative ELBO, shape ``(batch,)``."""
    act = common.ACTIVATIONS[self.activation]
    flat = x.reshape((x.shape[0], -1))
    h = flat
    for width in self.hidden_sizes:
      h = act(nn.Dense(width)(h))
    mean = nn.Dense(self.latent_size)(h)
    log_var = nn.Dense(self.latent_size)(h)
    z = mean + jnp.exp(0.5 * log_var) * eps
    for width in reversed(self.hidden_sizes):
      z = act(nn.Dense(width)(z))
    recon = nn.Dense(flat.shape[1])(z)
    nll = 0.5 * jnp.sum((recon - flat)**2, axis=1)
    kl = 0.5 * jnp.sum(jnp.exp(log_var) + mean**2 - 1.0 - log_var, axis=1)
    return nll + kl


@common.task_dataclass(static=("model", "label"))
class VAETask(Task):
  spec: VAESpec
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
    eps = jnp.zeros((1, self.spec.latent_size), jnp.float32)
    return common.scale_init(common.init_module(self.model, key, example, eps),
                             self.spec.init_scale)

  def loss(self, params: Any, key: PRNGKey, batch: dict[str, jax.Array]) -> jax.Array:
    x = batch["image"]
    eps = jax.random.normal(key, (x.shape[0], self.spec.latent_size), jnp.float32)
    neg_elbo = self.model.apply({"params": params}, x, eps)
    return jnp.mean(neg_elbo) / x[0].size

  def sample_batch(self, key: PRNGKey, split: Split = "train") -> dict[str, jax.Array]:
    return sample_image_batch(self.data, key, split, self.spec.batch_size, labels=False)

  def reference_loss(self) -> float:
    # Decoding 0 for standardised pixels with a perfect posterior: 1/2 per pixel.
    return 0.5


@register_family(FAMILY)
class VAEFamily(TaskFamily):
  """Ranges: dataset {digits, prototypes, shapes, blobs}, image_size {8, 16}, 1-2 hidden
  layers {32, 64, 128}, latent {2, 4, 8, 16}, activation as image_mlp, batch {16, 32, 64}."""
  spec_type = VAESpec
  static_fields = VAESpec.static_fields

  def sample(self, key: PRNGKey) -> VAESpec:
    rng = common.host_rng(key)
    depth = int(rng.integers(1, 3))
    return VAESpec(
        dataset=common.choice(rng, datasets.IMAGE_DATASETS),
        image_size=common.choice(rng, (8, 8, 16)),
        hidden_sizes=tuple(common.choice(rng, (32, 64, 128)) for _ in range(depth)),
        latent_size=common.choice(rng, (2, 4, 8, 16)),
        activation=common.choice(rng, sorted(common.ACTIVATIONS)),
        batch_size=common.choice(rng, (16, 32, 64)),
        init_scale=common.log_uniform(rng, 0.3, 3.0),
        data_seed=int(rng.integers(2**31)))

  def build(self, spec: VAESpec) -> VAETask:
    common.check_spec_type(spec, VAESpec, FAMILY)
    check_image_spec(spec, FAMILY)
    check_widths(spec.hidden_sizes, FAMILY, "hidden_sizes")
    check_activation(spec.activation, FAMILY)
    common.check(isinstance(spec.latent_size, int) and spec.latent_size >= 1, FAMILY,
                 f"latent_size must be a positive int, got {spec.latent_size!r}")
    data = datasets.image_dataset(spec.dataset, spec.image_size, spec.data_seed)
    return VAETask(
        spec=spec, data=data,
        model=VAE(spec.hidden_sizes, spec.latent_size, spec.activation),
        label=f"{FAMILY}/{spec.dataset}{spec.image_size}/"
        f"{'x'.join(map(str, spec.hidden_sizes))}_z{spec.latent_size}")

  def flops(self, spec: VAESpec) -> float:
    d = spec.image_size**2 * _channels_guess(spec.dataset)
    enc = (d, *spec.hidden_sizes)
    dec = (spec.latent_size, *reversed(spec.hidden_sizes), d)
    last = spec.hidden_sizes[-1] if spec.hidden_sizes else d
    forward = common.mlp_flops(enc) + common.mlp_flops(dec) + 2 * 2.0 * last * spec.latent_size
    return common.TRAIN_STEP_FLOPS_FACTOR * spec.batch_size * forward

  def example_spec(self) -> VAESpec:
    return VAESpec(dataset="digits", image_size=8, hidden_sizes=(64,), latent_size=8)
