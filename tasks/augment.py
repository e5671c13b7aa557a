"""Task augmentation as wrappers: reparameterisation, loss (gradient) scaling, label noise.

VeLO (Metz et al. 2022, sec. 4.3) and Celo (Moudgil et al. 2025) widen the
meta-training distribution by training on *reparameterised* copies of tasks:
each parameter tensor is stored divided by a random factor ``s`` and the loss
multiplies it back, so ``loss'(p / s) == loss(p)`` while gradients and
curvature are rescaled per tensor. An optimizer that does well on such copies
cannot rely on the tensor scales that default inits happen to produce.

Wrappers are pytree dataclasses too: their random factors are derived from a
``seed`` leaf, so wrapped tasks stack and vmap like the tasks they wrap. All of
them build on ``TaskWrapper``, which forwards the whole task contract (the
optional ``predict`` and ``layer_order`` included) to the wrapped task.
"""

from __future__ import annotations

from typing import Any, ClassVar

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


class TaskWrapper(Task):
  """Abstract: a task that forwards every member to ``inner``.

  Each augmentation subclasses it, declares its fields (``inner`` first) and
  overrides only what it changes; the name gets the class's ``suffix``. The
  augmentations are final: wrap a wrapped task instead of subclassing one.
  """
  # Abstract attributes. Each concrete wrapper declares all of its fields itself,
  # ``inner`` first (equinox: the fields of a class live in one class).
  inner: Task
  suffix: ClassVar[str]

  @property
  def name(self) -> str:
    return f"{self.inner.name}+{self.suffix}"

  @property
  def batch_spec(self) -> Any:
    return self.inner.batch_spec

  @property
  def has_predictions(self) -> bool:  # type: ignore[override]  # per instance: the inner's
    return self.inner.has_predictions

  def init(self, key: PRNGKey) -> Any:
    return self.inner.init(key)

  def loss(self, params: Any, key: PRNGKey, batch: Any) -> jax.Array:
    return self.inner.loss(params, key, batch)

  def sample_batch(self, key: PRNGKey, split: Split = "train") -> Any:
    return self.inner.sample_batch(key, split)

  def normalizer(self, loss: jax.Array) -> jax.Array:
    return self.inner.normalizer(loss)

  def reference_loss(self) -> float | jax.Array:
    return self.inner.reference_loss()

  def predict(self, params: Any, batch: Any) -> tuple[jax.Array, jax.Array]:
    return self.inner.predict(params, batch)

  def layer_order(self, params: Any) -> list[str]:
    return self.inner.layer_order(params)


@common.task_dataclass()
class ReparameterizedTask(TaskWrapper):
  """Stores each tensor divided by a random per-tensor factor; the loss is invariant."""
  inner: Task
  seed: int | jax.Array
  max_log_scale: float | jax.Array = 2.3  # factors in [0.1, 10]
  suffix = "reparam"

  def init(self, key: PRNGKey) -> Any:
    params = self.inner.init(key)
    scales = _tensor_scales(params, self.seed, self.max_log_scale)
    return jax.tree.map(lambda p, s: p / s, params, scales)

  def to_inner(self, params: Any) -> Any:
    """The wrapped task's parameters that ``params`` stand for."""
    scales = _tensor_scales(params, self.seed, self.max_log_scale)
    return jax.tree.map(lambda p, s: p * s, params, scales)

  def loss(self, params: Any, key: PRNGKey, batch: Any) -> jax.Array:
    return self.inner.loss(self.to_inner(params), key, batch)

  def predict(self, params: Any, batch: Any) -> tuple[jax.Array, jax.Array]:
    return self.inner.predict(self.to_inner(params), batch)

  # layer_order is forwarded as is: the stored parameters keep the inner's keys.


@common.task_dataclass()
class LossScaledTask(TaskWrapper):
  """Multiplies the loss (so every gradient) by ``scale``; the normalizer undoes it.

  Gradient renormalisation augmentation: the optimizer sees gradients whose
  overall magnitude varies by orders of magnitude across tasks, while the
  meta-loss (normalised) is unchanged.
  """
  inner: Task
  scale: float | jax.Array
  suffix = "lossscale"

  def loss(self, params: Any, key: PRNGKey, batch: Any) -> jax.Array:
    return jnp.asarray(self.scale, jnp.float32) * self.inner.loss(params, key, batch)

  def normalizer(self, loss: jax.Array) -> jax.Array:
    return self.inner.normalizer(loss / jnp.asarray(self.scale, jnp.float32))

  def reference_loss(self) -> jax.Array:
    return jnp.asarray(self.scale, jnp.float32) * self.inner.reference_loss()


@common.task_dataclass(static=("num_classes",))
class LabelNoiseTask(TaskWrapper):
  """Replaces each training label by a uniformly random one with probability ``rate``."""
  inner: Task
  rate: float | jax.Array
  num_classes: int
  suffix = "labelnoise"

  def sample_batch(self, key: PRNGKey, split: Split = "train") -> Any:
    key, flip_key, label_key = jax.random.split(key, 3)
    batch = self.inner.sample_batch(key, split)
    if split != "train":  # evaluation stays clean, so the meta-loss measures the real task
      return batch
    labels = batch["label"]
    flip = jax.random.uniform(flip_key, labels.shape) < jnp.asarray(self.rate, jnp.float32)
    noise = jax.random.randint(label_key, labels.shape, 0, self.num_classes, labels.dtype)
    return {**batch, "label": jnp.where(flip, noise, labels)}


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
