"""Noisy quadratics with a closed-form optimum: the exact check for meta-training.

  loss(x; eps) = 1/2 (x - c)^T A (x - c) + noise * eps^T (x - c),  eps ~ N(0, I)

``A = Q diag(lambda) Q^T`` with a random rotation ``Q`` and eigenvalues
log-spaced in ``[1, conditioning]``; ``c`` is a random centre. The noise term
has mean zero, so the expected loss is minimised at ``x* = c`` with optimal
value 0, and every sampled loss is exactly 0 there; the gradient noise has
standard deviation ``noise`` per coordinate. (Cf. the quadratic tasks of
learned_optimization and Wichrowska et al. 2017, "Learned optimizers that
scale and generalize".)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from typing import NamedTuple

from tasks import common
from tasks.base import PRNGKey, Split, Task, TaskFamily
from tasks.registry import family_of, register_family


# A is float32: its smallest eigenvalue (1) must stay well above the rounding error of its
# largest (eps 1.2e-7 x conditioning), or the matrix is not the quadratic the spec describes.
MAX_CONDITIONING = 1e6


@common.spec_dataclass(static=("dim",))
class QuadraticSpec:
  """A quadratic. Static: ``dim``. Leaves: everything else."""
  dim: int = 8
  conditioning: float = 10.0  # largest / smallest eigenvalue of A
  noise: float = 0.0  # std of the per-coordinate gradient noise
  init_scale: float = 1.0  # x0 ~ N(0, init_scale^2 I)
  seed: int = 0  # draws the rotation and the centre


class QuadraticData(NamedTuple):
  matrix: jax.Array  # [dim, dim], symmetric positive definite
  center: jax.Array  # [dim], the optimum
  reference: jax.Array  # [], expected loss at init: the normaliser's scale


@common.task_dataclass()
class QuadraticTask(Task):
  spec: QuadraticSpec
  data: QuadraticData

  @property
  def name(self) -> str:
    return f"{family_of(self.spec)}/d{self.spec.dim}"

  @property
  def batch_spec(self) -> dict[str, jax.ShapeDtypeStruct]:
    return {"eps": jax.ShapeDtypeStruct((self.spec.dim,), jnp.float32)}

  def init(self, key: PRNGKey) -> dict[str, jax.Array]:
    scale = jnp.asarray(self.spec.init_scale, jnp.float32)
    return {"x": scale * jax.random.normal(key, (self.spec.dim,), jnp.float32)}

  def loss(self, params: dict[str, jax.Array], key: PRNGKey,
           batch: dict[str, jax.Array]) -> jax.Array:
    del key
    d = params["x"] - self.data.center
    noise = jnp.asarray(self.spec.noise, jnp.float32)
    return 0.5 * d @ (self.data.matrix @ d) + noise * (batch["eps"] @ d)

  def sample_batch(self, key: PRNGKey, split: Split = "train") -> dict[str, jax.Array]:
    del split  # the noise is the only data; both splits draw it the same way
    return {"eps": jax.random.normal(key, (self.spec.dim,), jnp.float32)}

  def reference_loss(self) -> jax.Array:
    return self.data.reference

  def optimum(self) -> dict[str, jax.Array]:
    """The minimiser of the expected loss (and of every sampled loss)."""
    return {"x": self.data.center}

  def optimal_loss(self) -> jax.Array:
    """The loss at the optimum: exactly 0 for every batch."""
    return jnp.zeros((), jnp.float32)


def quadratic_data(spec: QuadraticSpec) -> QuadraticData:
  """A, c and the expected initial loss 1/2 (s^2 tr A + c^T A c), from the seed (host)."""
  rng = np.random.default_rng(spec.seed)
  q, _ = np.linalg.qr(rng.normal(size=(spec.dim, spec.dim)))
  eigs = spec.conditioning ** np.linspace(0.0, 1.0, spec.dim)
  matrix = (q * eigs) @ q.T
  matrix = 0.5 * (matrix + matrix.T)
  center = rng.normal(size=spec.dim)
  reference = 0.5 * (spec.init_scale**2 * np.trace(matrix) + center @ matrix @ center)
  return QuadraticData(jnp.asarray(matrix, jnp.float32), jnp.asarray(center, jnp.float32),
                       jnp.asarray(reference, jnp.float32))


@register_family("quadratic")
class QuadraticFamily(TaskFamily):
  """Ranges: dim in {2..64}, conditioning log-uniform [1, 1e3], noise 0 (1/3) or
  log-uniform [1e-3, 1], init_scale log-uniform [0.3, 3]."""
  spec_type = QuadraticSpec

  def sample(self, key: PRNGKey) -> QuadraticSpec:
    rng = common.host_rng(key)
    return QuadraticSpec(
        dim=common.choice(rng, (2, 4, 8, 16, 32, 64)),
        conditioning=common.log_uniform(rng, 1.0, 1e3),
        noise=0.0 if rng.random() < 1 / 3 else common.log_uniform(rng, 1e-3, 1.0),
        init_scale=common.log_uniform(rng, 0.3, 3.0),
        seed=int(rng.integers(2**31)))

  def build(self, spec: QuadraticSpec) -> QuadraticTask:
    name = self.name  # this family's registered name, so a subclass's errors name it
    common.check_spec_type(spec, self.spec_type, name)
    common.check(isinstance(spec.dim, int) and 1 <= spec.dim <= 4096, name,
                 f"dim must be an int in [1, 4096], got {spec.dim!r}")
    common.check_float(spec, name, "conditioning", low=1.0, high=MAX_CONDITIONING)
    common.check_float(spec, name, "noise", low=0.0)
    common.check_float(spec, name, "init_scale", low=0.0, low_open=True)
    common.check_seed(spec, name, "seed")
    return QuadraticTask(spec, quadratic_data(spec))

  def flops(self, spec: QuadraticSpec) -> float:
    return common.TRAIN_STEP_FLOPS_FACTOR * 2.0 * spec.dim**2

  def example_spec(self) -> QuadraticSpec:
    return QuadraticSpec(dim=8, conditioning=10.0, noise=0.01)


@common.spec_dataclass(static=("dim",))
class IllQuadraticSpec(QuadraticSpec):
  """A quadratic of the ``quadratic_ill`` family: the same fields, its own ranges."""


@register_family("quadratic_ill")
class IllQuadraticFamily(QuadraticFamily):
  """Ill-conditioned noisy quadratics: the slow tasks the default ranges lack.

  Ranges: dim in {32, 64}, conditioning log-uniform [1e2, 3e3], noise
  log-uniform [1e-2, 0.3], init_scale log-uniform [0.3, 3]. In the default
  family's ranges (conditioning <= 1e3, a third noiseless) a rule that anneals
  early loses nothing; here the loss at a few hundred steps is still limited by
  the step's size along the flat directions, which is what a rule has to learn
  to see (docs/pretrained.md, eighth round). Conditioning stops at 3e3 so the
  ``heldout`` quadratic (128-d, 1e4) stays outside on both axes.
  """
  spec_type = IllQuadraticSpec

  def sample(self, key: PRNGKey) -> IllQuadraticSpec:
    rng = common.host_rng(key)
    return IllQuadraticSpec(
        dim=common.choice(rng, (32, 64)),
        conditioning=common.log_uniform(rng, 1e2, 3e3),
        noise=common.log_uniform(rng, 1e-2, 0.3),
        init_scale=common.log_uniform(rng, 0.3, 3.0),
        seed=int(rng.integers(2**31)))

  def example_spec(self) -> IllQuadraticSpec:
    return IllQuadraticSpec(dim=32, conditioning=1e3, noise=0.1)
