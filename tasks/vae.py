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

from tasks import common, image
from tasks.base import PRNGKey, TaskFamily
from tasks.image import ImageTask
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

  def layer_order(self) -> list[str]:
    # Encoder, the mean and log-variance heads, decoder, output layer: creation order.
    return common.dense_names(2 * len(self.hidden_sizes) + 3)


@common.task_dataclass()
class VAETask(ImageTask):
  """The negative ELBO per pixel; the loss's key draws the reparameterisation noise."""
  with_labels = False

  def extra_inputs(self) -> tuple[jax.Array, ...]:
    return (jnp.zeros((1, self.spec.latent_size), jnp.float32),)  # eps

  def loss(self, params: Any, key: PRNGKey, batch: dict[str, jax.Array]) -> jax.Array:
    x = batch["image"]
    eps = jax.random.normal(key, (x.shape[0], self.spec.latent_size), jnp.float32)
    return jnp.mean(self.apply(params, x, eps)) / x[0].size

  def reference_loss(self) -> float:
    # Decoding 0 for standardised pixels with a perfect posterior: 1/2 per pixel.
    return 0.5


@register_family(FAMILY)
class VAEFamily(TaskFamily):
  """Ranges: dataset {digits, prototypes, shapes, blobs}, image_size {8, 16}, 1-2 hidden
  layers {32, 64, 128}, latent {2, 4, 8, 16}, activation as image_mlp, batch {16, 32, 64}."""
  spec_type = VAESpec

  def sample(self, key: PRNGKey) -> VAESpec:
    rng = common.host_rng(key)
    depth = int(rng.integers(1, 3))
    return VAESpec(
        **image.sample_image_fields(rng),
        hidden_sizes=tuple(common.choice(rng, (32, 64, 128)) for _ in range(depth)),
        latent_size=common.choice(rng, (2, 4, 8, 16)),
        activation=common.choice(rng, sorted(common.ACTIVATIONS)),
        batch_size=common.choice(rng, (16, 32, 64)),
        **common.sample_init_fields(rng))

  def build(self, spec: VAESpec) -> VAETask:
    image.check_image_spec(spec, VAESpec, FAMILY, widths="hidden_sizes")
    common.check_positive_ints(spec, FAMILY, ("latent_size",))
    return VAETask(
        spec=spec, data=image.image_data(spec),
        model=VAE(spec.hidden_sizes, spec.latent_size, spec.activation),
        label=f"{FAMILY}/{spec.dataset}{spec.image_size}/"
        f"{'x'.join(map(str, spec.hidden_sizes))}_z{spec.latent_size}")

  def flops(self, spec: VAESpec) -> float:
    d = spec.image_size**2 * image.channels_guess(spec.dataset)
    enc = (d, *spec.hidden_sizes)
    dec = (spec.latent_size, *reversed(spec.hidden_sizes), d)
    last = spec.hidden_sizes[-1] if spec.hidden_sizes else d
    forward = common.mlp_flops(enc) + common.mlp_flops(dec) + 2 * 2.0 * last * spec.latent_size
    return common.TRAIN_STEP_FLOPS_FACTOR * spec.batch_size * forward

  def example_spec(self) -> VAESpec:
    return VAESpec(dataset="digits", image_size=8, hidden_sizes=(64,), latent_size=8)
