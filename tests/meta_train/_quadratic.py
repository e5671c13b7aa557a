"""A private quadratic task for the meta_train tests, used until tasks/ lands."""

import dataclasses

import jax
import jax.numpy as jnp

from tasks.base import Task, normalize_loss


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Quadratic(Task):
  curv: jax.Array  # (dim,) diagonal curvature
  noise: jax.Array  # () batch noise scale
  dim: int = dataclasses.field(default=4, metadata=dict(static=True))

  @property
  def name(self):
    return f"quadratic/d{self.dim}"

  @property
  def batch_spec(self):
    return {"target": jax.ShapeDtypeStruct((self.dim,), jnp.float32)}

  def init(self, key):
    return {"x": jax.random.normal(key, (self.dim,), jnp.float32)}

  def loss(self, params, key, batch):
    del key
    return 0.5 * jnp.sum(self.curv * jnp.square(params["x"] - batch["target"]))

  def sample_batch(self, key, split="train"):
    del split
    return {"target": self.noise * jax.random.normal(key, (self.dim,), jnp.float32)}

  def normalizer(self, loss):
    return normalize_loss(loss, 0.5 * jnp.sum(self.curv))


def make(key, dim=4, noise=0.1):
  curv = jnp.exp(jax.random.uniform(key, (dim,), jnp.float32, -1.0, 1.0))
  return Quadratic(curv=curv, noise=jnp.float32(noise), dim=dim)
