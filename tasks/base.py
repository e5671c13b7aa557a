"""The task contract: what a training problem and a family of them look like.

A *task* is one training problem (model + data + loss). A *task family*
describes a space of tasks: ``family.sample(key)`` draws a **spec**, a frozen
dataclass of plain data (JSON-able, hashable, loggable), and
``family.build(spec)`` turns it into a :class:`Task`.

Tasks are **pytrees**: fields that change array shapes (widths, depth, image
size, sequence length, ...) are static (pytree aux data); continuous fields
(init scale, data seed, noise level) are leaves. So tasks built from specs that
share shapes can be stacked with :func:`stack_tasks` and ``jax.vmap``-ed over,
which is how meta-training runs a meta-batch of one family in one compiled
program. Every family documents which of its spec fields are static.

The in-memory sampler ``task.sample_batch(key, split)`` is a pure jittable
function, so an unrolled inner training can draw batches inside
``jit``/``vmap``/``scan`` without host round-trips.

Beyond training, evaluation asks two optional questions of a task, and the task
answers them itself instead of having its flax module names guessed:
``predict`` (the predictive distribution, for ensembles; only where
``has_predictions``) and ``layer_order`` (the parameter groups from input to
output, for FreezeOut and layer-wise learning rates). Curvature and local-loss
optimizers (K-FAC, LocoProp) ask a third: ``dense_structure`` (the network as
dense layers and a named output loss, ``tasks/dense.py``), which only plain
stacks of dense layers answer.
"""

from __future__ import annotations

import abc
import functools
from typing import Any, ClassVar, Iterator, Literal, Mapping

import chex
import jax
import jax.numpy as jnp

Params = Any
Batch = Any  # a pytree of arrays
Spec = Any  # a frozen dataclass of plain data
PRNGKey = chex.PRNGKey
Split = Literal["train", "eval"]

# Losses at or above this (and NaN/inf) count as "diverged" after normalisation.
MAX_NORMALIZED_LOSS = 10.0


class TaskError(ValueError):
  """Raised for a bad spec, an unknown family or unavailable data; names the fix."""


class Task(abc.ABC):
  """One training problem. Concrete tasks are pytree-registered dataclasses."""

  # Whether ``predict`` is defined: the task has a predictive distribution over
  # classes (classifiers, language models). Regressions, autoencoders and the
  # quadratic have none, and averaging their parameters is not an ensemble.
  # Read it on the task, not its class: a wrapper answers for the task it wraps.
  has_predictions: ClassVar[bool] = False

  @property
  @abc.abstractmethod
  def name(self) -> str:
    """A short human-readable name, e.g. ``image_mlp/digits8/w32x2``."""

  @property
  @abc.abstractmethod
  def batch_spec(self) -> Batch:
    """Shapes and dtypes of one batch, as a pytree of ``jax.ShapeDtypeStruct``."""

  @abc.abstractmethod
  def init(self, key: PRNGKey) -> Params:
    """Fresh model parameters."""

  @abc.abstractmethod
  def loss(self, params: Params, key: PRNGKey, batch: Batch) -> jax.Array:
    """Scalar training loss of ``params`` on ``batch``."""

  @abc.abstractmethod
  def sample_batch(self, key: PRNGKey, split: Split = "train") -> Batch:
    """Draws one batch; pure and jittable (data lives in memory)."""

  def batches(self, key: PRNGKey, *, split: Split = "train") -> Iterator[Batch]:
    """An endless, seeded, deterministic host-side iterator of batches."""
    while True:
      key, sub = jax.random.split(key)
      yield _jitted_sample_batch(self, sub, split)

  def normalizer(self, loss: jax.Array) -> jax.Array:
    """Maps a raw loss to a comparable scale; NaN/inf map to MAX_NORMALIZED_LOSS.

    The default divides by the loss of a trivial predictor (see each family)
    and clips, so a fresh model scores about 1 and divergence scores the max.
    """
    return normalize_loss(loss, self.reference_loss())

  def reference_loss(self) -> float | jax.Array:
    """The loss of a trivial predictor (e.g. log(num_classes)); used by normalizer."""
    return 1.0

  def predict(self, params: Params, batch: Batch) -> tuple[jax.Array, jax.Array]:
    """``(logits, labels)`` of ``batch``: logits ``[..., classes]``, integer labels ``[...]``.

    Defined only by tasks with ``has_predictions`` (the image classifiers of
    ``image_mlp`` and ``image_conv``, and the language models of ``rnn_lm`` and
    ``transformer_lm``, whose positions are the leading dims); check the flag first.
    """
    del params, batch
    raise TaskError(
        f"{self.name} has no predictive distribution (has_predictions is False); only "
        "classifiers and language models (image_mlp, image_conv, rnn_lm, transformer_lm) "
        "define predict. Check task.has_predictions, or define predict and set "
        "has_predictions = True on your task class.")

  def dense_structure(self) -> Any:
    """The network as a ``tasks.dense.DenseStructure``, or None if it is not a dense stack.

    None by default: convolutions, recurrences, attention, wrapped tasks (whose
    parameters are reparameterised) and the quadratic are not stacks of dense
    layers with a named output loss. ``image_mlp``, ``autoencoder`` and
    ``deep_autoencoder`` declare one.
    """
    return None

  def layer_order(self, params: Params) -> list[str]:
    """The top-level parameter groups (keys of ``params``), from input to output.

    FreezeOut and layer-wise learning rates read it. Pytrees sort dict keys
    (``Dense_10`` before ``Dense_2``), so a task whose order matters must
    return it from its architecture. This fallback returns the keys of a dict
    as they are: right for one group, or for names that sort in forward order.
    """
    if not isinstance(params, Mapping):
      raise TaskError(f"{self.name}: layer_order needs a dict of parameter groups, got "
                      f"{type(params).__name__}; override layer_order on the task.")
    return list(params)


# The task is a jit *argument* (a pytree), not a closed-over constant: its dataset
# then stays a buffer instead of being baked into the program, and one compiled
# sampler serves every task with the same static fields.
@functools.partial(jax.jit, static_argnums=2)
def _jitted_sample_batch(task: Task, key: PRNGKey, split: Split) -> Batch:
  return task.sample_batch(key, split)


def normalize_loss(loss: jax.Array, reference: float | jax.Array) -> jax.Array:
  """``loss / reference``, clipped to ``[.., MAX_NORMALIZED_LOSS]``, NaN/inf -> max."""
  x = loss / reference
  x = jnp.where(jnp.isfinite(x), x, MAX_NORMALIZED_LOSS)
  return jnp.minimum(x, MAX_NORMALIZED_LOSS)


class TaskFamily(abc.ABC):
  """A space of tasks: sample plain-data specs, build tasks from them."""

  name: str  # set by the registry
  spec_type: type  # the frozen dataclass of this family's specs (tasks.common.spec_dataclass)

  @property
  def static_fields(self) -> tuple[str, ...]:
    """Spec fields that change shapes (cannot be vmapped over), read from ``spec_type``.

    Derived, not declared, so a family cannot disagree with its own spec's pytree.
    """
    return type(self).spec_type.static_fields

  @abc.abstractmethod
  def sample(self, key: PRNGKey) -> Spec:
    """Draws a spec from this family's ranges."""

  @abc.abstractmethod
  def build(self, spec: Spec) -> Task:
    """Builds the task a spec describes; raises TaskError for a bad spec."""

  @abc.abstractmethod
  def flops(self, spec: Spec) -> float:
    """Estimated FLOPs of one training step (forward + backward), from the spec alone.

    The sampler's cost model: it caps what a distribution draws. It must not
    build the task or time anything.
    """

  def example_spec(self) -> Spec:
    """A small, fast instance; the registry-wide tests train it for a few steps."""
    return self.sample(jax.random.key(0))


def stack_tasks(tasks: list[Task]) -> Task:
  """Stacks tasks that share static fields into one task with a leading axis.

  Use the result with ``jax.vmap(..., in_axes=(0, ...))``. Raises
  :class:`TaskError` if the tasks differ in a static (shape-changing) field.
  """
  structs = {jax.tree.structure(t) for t in tasks}
  if len(structs) != 1:
    raise TaskError(
        "tasks differ in shape-changing (static) spec fields, so they cannot be vmapped "
        "together; group them by family and static fields first.")
  return jax.tree.map(lambda *xs: jnp.stack(xs), *tasks)
