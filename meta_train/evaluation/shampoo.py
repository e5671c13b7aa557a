"""Matrix-preconditioned baselines: Shampoo (ours) and Muon (optax), LR tuned like Adam.

Shampoo (Gupta, Koren & Singer 2018, "Shampoo: Preconditioned Stochastic Tensor
Optimization") preconditions a matrix gradient ``G`` from both sides with the
accumulated statistics ``L = sum G G^T`` and ``R = sum G^T G``: the direction is
``L^{-1/4} G R^{-1/4}``. As in Anil et al. 2020 ("Scalable Second Order
Optimization for Deep Learning") and Shi et al. 2023 (PyTorch Distributed
Shampoo), the inverse roots come from an eigendecomposition recomputed only
every ``precondition_every`` steps, sides over ``max_precond_dim`` fall back to
diagonal statistics, and the step is *grafted* onto Adam: Shampoo gives each
tensor's direction, Adam's update gives its Frobenius norm. Following Shi et
al., the preconditioner is applied to Adam's (bias-corrected) first moment, so
direction and magnitude see the same momentum. The maintained JAX Shampoo on
PyPI (``optax-shampoo`` 0.0.6, 2022) no longer imports with this JAX
(``jax.tree_map`` is gone), hence this small version. Its eigendecompositions are
LAPACK custom calls, which XLA:CPU's concurrent scheduler can leave hanging
(seen with the vmapped LR grid): on CPU call ``learned_opt.xla_cpu.apply()``
first, as ``scripts/evaluate.py`` and the tests do.

Muon (Jordan et al. 2024; ``optax.contrib.muon``) orthogonalises the momentum
of each 2-D parameter (Shampoo without accumulation, per its docstring) and
updates the rest with Adam at the same LR.

Both baselines get tuned Adam's budget: the best of the 14 LRs of
``baselines.ADAM_GRID`` by final training loss, run as one vmapped program.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from meta_train.evaluation import baselines, runner
from meta_train.evaluation.base import HParams, RunRecord, Setting
from meta_train.evaluation.baselines import register_baseline

# Smallest statistic scale used for damping, so an all-zero gradient gives a zero step, not NaN.
_TINY = 1e-30


class Preconditioner(NamedTuple):
  """One matrix parameter's statistics and their inverse fourth roots.

  Each side is dense, shape ``(d, d)``, or diagonal, shape ``(d,)`` (when ``d``
  exceeds ``max_precond_dim``); ``left`` is over rows, ``right`` over columns of
  the parameter reshaped to ``(-1, shape[-1])``.
  """
  left: jax.Array
  right: jax.Array
  left_root: jax.Array
  right_root: jax.Array


class ShampooState(NamedTuple):
  count: jax.Array  # int32 steps taken
  mu: optax.Updates  # Adam's first moment (the grafting step and the preconditioned direction)
  nu: optax.Updates  # Adam's second moment
  preconditioners: Any  # per parameter: a Preconditioner, or None for Adam-only (ndim < 2)


def as_matrix(x: jax.Array) -> jax.Array:
  """``x`` reshaped to 2-D, ``(prod(shape[:-1]), shape[-1])`` (a conv kernel's fan-in by fan-out)."""
  return x.reshape(-1, x.shape[-1])


def _side(d: int, max_precond_dim: int) -> tuple[jax.Array, jax.Array]:
  if d > max_precond_dim:
    return jnp.zeros((d,), jnp.float32), jnp.ones((d,), jnp.float32)
  return jnp.zeros((d, d), jnp.float32), jnp.eye(d, dtype=jnp.float32)


def init_preconditioner(param: jax.Array, max_precond_dim: int) -> Preconditioner | None:
  """Zero statistics and identity roots, or None for a parameter Adam updates alone."""
  if param.ndim < 2:
    return None
  rows, cols = as_matrix(param).shape
  (left, left_root), (right, right_root) = _side(rows, max_precond_dim), _side(cols,
                                                                                max_precond_dim)
  return Preconditioner(left, right, left_root, right_root)


def gram(g: jax.Array, like: jax.Array) -> jax.Array:
  """``g g^T``, or only its diagonal when the statistic ``like`` is diagonal."""
  return jnp.sum(g * g, axis=1) if like.ndim == 1 else g @ g.T


def inverse_fourth_root(stat: jax.Array, eps: float) -> jax.Array:
  """``(stat + eps * lambda_max I)^{-1/4}`` of a symmetric PSD ``stat`` (dense or diagonal).

  The damping is relative to the largest eigenvalue, so the direction does not
  depend on the statistic's scale: a sum and an EMA without bias correction
  give the same preconditioner.
  """
  if stat.ndim == 1:
    lam = jnp.maximum(stat, 0.0)
    return (lam + eps * jnp.maximum(jnp.max(lam), _TINY)) ** -0.25
  # eigh of a PSD matrix in float32 can return tiny negative eigenvalues; they are noise.
  lam, vecs = jnp.linalg.eigh(stat)
  lam = jnp.maximum(lam, 0.0)
  inv = (lam + eps * jnp.maximum(jnp.max(lam), _TINY)) ** -0.25
  return (vecs * inv[None, :]) @ vecs.T


def _apply_left(root: jax.Array, m: jax.Array) -> jax.Array:
  return root[:, None] * m if root.ndim == 1 else root @ m


def precondition(pc: Preconditioner, m: jax.Array) -> jax.Array:
  """``L^{-1/4} m R^{-1/4}`` with the stored roots, for a 2-D ``m``."""
  return _apply_left(pc.right_root, _apply_left(pc.left_root, m).T).T


def update_preconditioner(pc: Preconditioner, g: jax.Array, *, beta2: float, eps: float,
                          recompute: jax.Array) -> Preconditioner:
  """Adds ``g``'s statistics; recomputes the roots when ``recompute`` (else keeps stale ones)."""
  # beta2 = 1 is Gupta et al.'s running sum; below 1, an EMA (Anil et al.).
  w = 1.0 if beta2 == 1.0 else 1.0 - beta2
  left = beta2 * pc.left + w * gram(g, pc.left)
  right = beta2 * pc.right + w * gram(g.T, pc.right)
  roots = jax.lax.cond(recompute,
                       lambda: (inverse_fourth_root(left, eps), inverse_fourth_root(right, eps)),
                       lambda: (pc.left_root, pc.right_root))
  return Preconditioner(left, right, *roots)


def graft(direction: jax.Array, step: jax.Array) -> jax.Array:
  """``direction`` rescaled to the Frobenius norm of ``step`` (a zero direction stays zero)."""
  norm = jnp.sqrt(jnp.sum(direction * direction))
  return direction * (jnp.sqrt(jnp.sum(step * step)) / jnp.maximum(norm, _TINY))


def scale_by_shampoo(*, b1: float = 0.9, b2: float = 0.999, beta2: float = 0.999,
                     eps: float = 1e-6, adam_eps: float = 1e-8, precondition_every: int = 10,
                     max_precond_dim: int = 1024) -> optax.GradientTransformation:
  """Shampoo's direction with Adam's per-tensor step norm (no learning rate: chain one).

  Args:
    b1, b2, adam_eps: Adam's moments and epsilon (the grafted step; ``b1`` is
      also the momentum of the preconditioned direction).
    beta2: decay of the Shampoo statistics; 1.0 sums them (Gupta et al.).
    eps: damping of the statistics, relative to their largest eigenvalue.
    precondition_every: the inverse roots are recomputed on steps
      ``0, k, 2k, ...`` and reused in between (the first step always computes).
    max_precond_dim: a side longer than this keeps a diagonal statistic.

  Returns:
    An optax transform; parameters with ``ndim < 2`` get Adam's update.

  Examples:
    >>> import jax.numpy as jnp
    >>> tx = scale_by_shampoo()
    >>> params = {"w": jnp.ones((3, 4)), "b": jnp.ones(4)}
    >>> updates, _ = tx.update(params, tx.init(params))
    >>> updates["w"].shape
    (3, 4)
  """
  if precondition_every < 1:
    raise ValueError(f"precondition_every must be >= 1, got {precondition_every}.")

  def init_fn(params):
    return ShampooState(
        count=jnp.zeros([], jnp.int32), mu=jax.tree.map(jnp.zeros_like, params),
        nu=jax.tree.map(jnp.zeros_like, params),
        preconditioners=jax.tree.map(lambda p: init_preconditioner(p, max_precond_dim), params))

  def update_fn(updates, state, params=None):
    del params
    mu = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, state.mu, updates)
    nu = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, state.nu, updates)
    t = (state.count + 1).astype(jnp.float32)
    recompute = state.count % precondition_every == 0

    def leaf(g, m, v, pc):
      m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
      adam = m_hat / (jnp.sqrt(v_hat) + adam_eps)
      if pc is None:
        return adam, None
      pc = update_preconditioner(pc, as_matrix(g), beta2=beta2, eps=eps, recompute=recompute)
      direction = precondition(pc, as_matrix(m_hat)).reshape(g.shape)
      return graft(direction, adam), pc

    out = jax.tree.map(leaf, updates, mu, nu, state.preconditioners)
    pick = lambda i: jax.tree.map(lambda _, o: o[i], updates, out)
    return pick(0), ShampooState(state.count + 1, mu, nu, pick(1))

  return optax.GradientTransformation(init_fn, update_fn)


def shampoo(learning_rate: optax.ScalarOrSchedule, **kwargs: Any) -> optax.GradientTransformation:
  """:func:`scale_by_shampoo` (keyword arguments) followed by the learning rate."""
  return optax.chain(scale_by_shampoo(**kwargs), optax.scale_by_learning_rate(learning_rate))


# ----------------------------------------------------------------------------
# The LR-tuned baselines.
# ----------------------------------------------------------------------------


def lr_grid(make_tx: runner.MakeTx, task: Any, seed: int, setting: Setting, *,
            sequential: bool = False) -> RunRecord:
  """The best of ``make_tx({"lr": lr})`` over ``ADAM_GRID`` by final training loss.

  The cost counted is all 14 runs, exactly as ``adam_tuned``'s. ``sequential``
  runs the LRs one after another through one compiled program instead of one
  vmapped program: under ``vmap`` a ``lax.cond`` on the (batched) step count
  becomes a select that evaluates both branches, so Shampoo would pay for its
  eigendecompositions on every step instead of every ``precondition_every``.
  """
  lrs = list(baselines.ADAM_GRID)
  if sequential:
    # The compiled program is cached by signature, so only the first run compiles.
    records = [runner.run(make_tx, {"lr": jnp.float32(lr)}, task, seed, setting).record
               for lr in lrs]
  else:
    records = runner.run_many(make_tx, {"lr": jnp.asarray(lrs, jnp.float32)}, task, seed,
                              setting)
  return baselines.best_run(records, lrs, setting)


def shampoo_tx(hparams: HParams, num_steps: int) -> optax.GradientTransformation:
  del num_steps
  return shampoo(hparams["lr"])


def muon_tx(hparams: HParams, num_steps: int) -> optax.GradientTransformation:
  del num_steps
  return optax.contrib.muon(hparams["lr"])


@register_baseline(
    "shampoo_tuned", "Shampoo (ours, Gupta et al. 2018): L^-1/4 G R^-1/4 on Adam's first moment, "
    "statistics EMA 0.999, roots by eigh every 10 steps, damping 1e-6 x lambda_max, sides > 1024 "
    "diagonal, grafted onto Adam's per-tensor step norm; 1-D params by Adam; constant LR, best of "
    "14 log-spaced LRs in [1e-4, 1] by final training loss", "14 runs (LR grid)")
def shampoo_tuned(task: Any, seed: int, setting: Setting) -> RunRecord:
  return lr_grid(shampoo_tx, task, seed, setting, sequential=True)


@register_baseline(
    "muon_tuned", "Muon (optax.contrib.muon defaults: momentum 0.95, Nesterov, 5 Newton-Schulz "
    "steps) on 2-D params, Adam at the same LR on the rest; constant LR, best of 14 log-spaced "
    "LRs in [1e-4, 1] by final training loss", "14 runs (LR grid)")
def muon_tuned(task: Any, seed: int, setting: Setting) -> RunRecord:
  return lr_grid(muon_tx, task, seed, setting)
