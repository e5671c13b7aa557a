"""Task augmentation as wrappers: reparameterisation, loss (gradient) scaling, label noise.

VeLO (Metz et al. 2022, sec. 4.3) and Celo (Moudgil et al. 2025) widen the
meta-training distribution by training on *reparameterised* copies of tasks:
each parameter tensor is stored divided by a random factor ``s`` and the loss
multiplies it back, so ``loss'(p / s) == loss(p)`` while gradients and
curvature are rescaled per tensor. An optimizer that does well on such copies
cannot rely on the tensor scales that default inits happen to produce.

Wrappers are pytree dataclasses too: their random factors are derived from a
``seed`` leaf, so wrapped tasks stack and vmap like the tasks they wrap.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from tasks import common
from tasks.base import PRNGKey, Split, Task, TaskError


def _tensor_scales(params: Any, seed: jax.Array, max_log_scale: jax.Array) -> Any:
  """One factor exp(U(-m, m)) per tensor, from the seed and the tensor's position."""
  leaves, treedef = jax.tree.flatten(params)
  base = jax.random.key(seed)
  m = jnp.asarray(max_log_scale, jnp.float32)
  scales = [jnp.exp(jax.random.uniform(jax.random.fold_in(base, i), (), jnp.float32, -m, m))
            for i in range(len(leaves))]
  return jax.tree.unflatten(treedef, scales)


@common.task_dataclass()
class ReparameterizedTask(Task):
  """Stores each tensor divided by a random per-tensor factor; the loss is invariant."""
  inner: Task
  seed: int | jax.Array
  max_log_scale: float | jax.Array = 2.3  # factors in [0.1, 10]

  @property
  def name(self) -> str:
    return f"{self.inner.name}+reparam"

  @property
  def batch_spec(self) -> Any:
    return self.inner.batch_spec

  def init(self, key: PRNGKey) -> Any:
    params = self.inner.init(key)
    scales = _tensor_scales(params, self.seed, self.max_log_scale)
    return jax.tree.map(lambda p, s: p / s, params, scales)

  def loss(self, params: Any, key: PRNGKey, batch: Any) -> jax.Array:
    scales = _tensor_scales(params, self.seed, self.max_log_scale)
    return self.inner.loss(jax.tree.map(lambda p, s: p * s, params, scales), key, batch)

  def to_inner(self, params: Any) -> Any:
    """The wrapped task's parameters that ``params`` stand for."""
    scales = _tensor_scales(params, self.seed, self.max_log_scale)
    return jax.tree.map(lambda p, s: p * s, params, scales)

  def sample_batch(self, key: PRNGKey, split: Split = "train") -> Any:
    return self.inner.sample_batch(key, split)

  def normalizer(self, loss: jax.Array) -> jax.Array:
    return self.inner.normalizer(loss)


@common.task_dataclass()
class LossScaledTask(Task):
  """Multiplies the loss (so every gradient) by ``scale``; the normalizer undoes it.

  Gradient renormalisation augmentation: the optimizer sees gradients whose
  overall magnitude varies by orders of magnitude across tasks, while the
  meta-loss (normalised) is unchanged.
  """
  inner: Task
  scale: float | jax.Array

  @property
  def name(self) -> str:
    return f"{self.inner.name}+lossscale"

  @property
  def batch_spec(self) -> Any:
    return self.inner.batch_spec

  def init(self, key: PRNGKey) -> Any:
    return self.inner.init(key)

  def loss(self, params: Any, key: PRNGKey, batch: Any) -> jax.Array:
    return jnp.asarray(self.scale, jnp.float32) * self.inner.loss(params, key, batch)

  def sample_batch(self, key: PRNGKey, split: Split = "train") -> Any:
    return self.inner.sample_batch(key, split)

  def normalizer(self, loss: jax.Array) -> jax.Array:
    return self.inner.normalizer(loss / jnp.asarray(self.scale, jnp.float32))


@common.task_dataclass(static=("num_classes",))
class LabelNoiseTask(Task):
  """Replaces each training label by a uniformly random one with probability ``rate``."""
  inner: Task
  rate: float | jax.Array
  num_classes: int

  @property
  def name(self) -> str:
    return f"{self.inner.name}+labelnoise"

  @property
  def batch_spec(self) -> Any:
    return self.inner.batch_spec

  def init(self, key: PRNGKey) -> Any:
    return self.inner.init(key)

  def loss(self, params: Any, key: PRNGKey, batch: Any) -> jax.Array:
    return self.inner.loss(params, key, batch)

  def sample_batch(self, key: PRNGKey, split: Split = "train") -> Any:
    key, flip_key, label_key = jax.random.split(key, 3)
    batch = self.inner.sample_batch(key, split)
    if split != "train":  # evaluation stays clean, so the meta-loss measures the real task
      return batch
    labels = batch["label"]
    flip = jax.random.uniform(flip_key, labels.shape) < jnp.asarray(self.rate, jnp.float32)
    noise = jax.random.randint(label_key, labels.shape, 0, self.num_classes, labels.dtype)
    return {**batch, "label": jnp.where(flip, noise, labels)}

  def normalizer(self, loss: jax.Array) -> jax.Array:
    return self.inner.normalizer(loss)


def augment(task: Task, key: PRNGKey, *, reparam: bool = True, max_log_scale: float = 2.3,
            loss_scale_range: tuple[float, float] | None = None,
            label_noise: float = 0.0) -> Task:
  """Wraps ``task`` with the chosen augmentations, their randomness drawn from ``key``.

  Args:
    task: the task to wrap.
    key: draws the reparameterisation seed and the loss scale.
    reparam: rescale each tensor by a random factor in ``[e^-m, e^m]``.
    max_log_scale: ``m`` above.
    loss_scale_range: if given, multiply the loss by a log-uniform factor in it.
    label_noise: if > 0, the probability of replacing a training label; needs a
      task with ``num_classes`` and ``label`` batches.

  Returns:
    The wrapped task (``task`` itself if nothing is chosen).
  """
  rng = common.host_rng(key)
  if label_noise > 0:
    num_classes = getattr(task, "num_classes", None)
    if num_classes is None or "label" not in task.batch_spec:
      raise TaskError(f"label noise needs a classification task; {task.name} has no labels.")
    task = LabelNoiseTask(task, float(label_noise), int(num_classes))
  if loss_scale_range is not None:
    task = LossScaledTask(task, common.log_uniform(rng, *loss_scale_range))
  if reparam:
    task = ReparameterizedTask(task, int(rng.integers(2**31)), float(max_log_scale))
  return task
