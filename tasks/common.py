"""Helpers shared by the task families: pytree dataclasses, host RNG, init scaling.

Specs and tasks are frozen dataclasses registered as pytrees with
``jax.tree_util.register_dataclass``: a spec's *static* fields (those that
change shapes) become pytree metadata, its other fields become leaves. A task
holds its spec and its in-memory dataset as leaves, so ``stack_tasks`` stacks
the continuous spec values and the datasets, and ``jax.vmap`` runs one program
over a meta-batch of tasks. Abstract task bases (``tasks.model.ModelTask``)
mark their static fields with :func:`static_field`, so every concrete task
built on them keeps the same split.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, Callable, Sequence, TypeVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from tasks.base import PRNGKey, TaskError

T = TypeVar("T", bound=type)

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu,
    "tanh": nn.tanh,
    "gelu": nn.gelu,
    "elu": nn.elu,
    "swish": nn.swish,
}


def spec_dataclass(*, static: Sequence[str]) -> Callable[[T], T]:
  """Makes ``cls`` a frozen dataclass and a pytree whose ``static`` fields are metadata.

  Validation belongs in ``TaskFamily.build``, not in ``__post_init__``: JAX
  rebuilds specs with tracers as leaves when it vmaps over stacked tasks.
  """

  def wrap(cls: T) -> T:
    cls = dataclasses.dataclass(frozen=True)(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = set(static) - set(names)
    if unknown:
      raise TypeError(f"static fields {sorted(unknown)} are not fields of {cls.__name__}")
    jax.tree_util.register_dataclass(
        cls, data_fields=[n for n in names if n not in static], meta_fields=list(static))
    cls.static_fields = tuple(static)
    return cls

  return wrap


def static_field() -> Any:
  """A task field that is pytree metadata (a flax module, a name), not a leaf.

  For the fields an abstract task base declares: its concrete subclasses are
  registered by :func:`task_dataclass`, which reads this marker, so every task
  built on the base keeps the same static/leaf split.
  """
  return dataclasses.field(metadata={"static": True})


def task_dataclass(*, static: Sequence[str] = ()) -> Callable[[T], T]:
  """Makes ``cls`` a frozen dataclass pytree; fields not in ``static`` are subtrees.

  Fields inherited from an abstract base count as static when the base marks
  them with :func:`static_field`.
  """

  def wrap(cls: T) -> T:
    cls = dataclasses.dataclass(frozen=True)(cls)
    fields = dataclasses.fields(cls)
    meta = [f.name for f in fields if f.name in static or f.metadata.get("static", False)]
    jax.tree_util.register_dataclass(
        cls, data_fields=[f.name for f in fields if f.name not in meta], meta_fields=meta)
    return cls

  return wrap


def host_rng(key: PRNGKey) -> np.random.Generator:
  """A numpy Generator seeded by a JAX key.

  Specs are plain Python data drawn on the host; one device round trip per
  spec (instead of one per field) keeps drawing thousands of specs fast.
  """
  data = np.asarray(jax.random.key_data(key), dtype=np.uint32).ravel()
  return np.random.default_rng([int(x) for x in data])


def log_uniform(rng: np.random.Generator, low: float, high: float, digits: int = 4) -> float:
  """A Python float drawn log-uniformly from [low, high], rounded so JSON stays short."""
  return float(np.round(np.exp(rng.uniform(np.log(low), np.log(high))), digits))


def choice(rng: np.random.Generator, options: Sequence[Any]) -> Any:
  """One of ``options`` as a plain Python value (numpy scalars are not JSON)."""
  value = options[int(rng.integers(len(options)))]
  return value.item() if isinstance(value, np.generic) else value


def sample_init_fields(rng: np.random.Generator) -> dict[str, Any]:
  """The spec fields every model family draws last: ``init_scale`` and ``data_seed``."""
  return dict(init_scale=log_uniform(rng, 0.3, 3.0), data_seed=int(rng.integers(2**31)))


def scale_init(params: Any, scale: float | jax.Array) -> Any:
  """Multiplies weight matrices and embeddings (not biases or norms) by ``scale``."""

  def f(path: tuple[Any, ...], x: jax.Array) -> jax.Array:
    name = getattr(path[-1], "key", None)
    if name in ("kernel", "embedding"):
      return x * jnp.asarray(scale, x.dtype)
    return x

  return jax.tree_util.tree_map_with_path(f, params)


def init_module(module: nn.Module, key: PRNGKey, *example: jax.Array) -> dict[str, Any]:
  """``module.init(...)['params']`` as a plain dict of float32 arrays."""
  params = module.init(key, *example)["params"]
  return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), dict(params))


def softmax_xent(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean softmax cross-entropy with integer labels."""
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


def check(condition: bool, family: str, message: str) -> None:
  """Raises TaskError('bad <family> spec: <message>') unless ``condition``."""
  if not condition:
    raise TaskError(f"bad {family} spec: {message}")


def check_spec_type(spec: Any, spec_type: type, family: str) -> None:
  check(isinstance(spec, spec_type), family,
        f"expected a {spec_type.__name__}, got {type(spec).__name__}")


def check_positive_ints(spec: Any, family: str, fields: Sequence[str]) -> None:
  """Checks that each of ``fields`` of ``spec`` is an int >= 1."""
  for field in fields:
    value = getattr(spec, field)
    check(isinstance(value, int) and value >= 1, family,
          f"{field} must be a positive int, got {value!r}")


# Seeds are spec leaves, so stacked tasks hold them as int32 arrays.
MAX_SEED = 2**31 - 1


def check_float(spec: Any, family: str, field: str, *, low: float, high: float = math.inf,
                low_open: bool = False) -> None:
  """Checks that ``spec.<field>`` is a finite real number in ``[low, high]`` (``(low, high]``
  with ``low_open``).

  Finiteness is checked on its own: inf passes any lower bound, and NaN passes any check
  written as ``not x < low``; either builds a task that trains on NaN.
  """
  value = getattr(spec, field)
  number = isinstance(value, numbers.Real) and not isinstance(value, bool)
  ok = (number and math.isfinite(value) and (value > low if low_open else value >= low)
        and value <= high)
  bounds = f"{'>' if low_open else '>='} {low:g}" + (f" and <= {high:g}" if high < math.inf
                                                     else "")
  check(ok, family, f"{field} must be a finite number {bounds}, got {value!r}")


def check_seed(spec: Any, family: str, field: str) -> None:
  """Checks that ``spec.<field>`` is an int in ``[0, MAX_SEED]`` (numpy refuses negative
  seeds, and int32 holds no larger ones)."""
  value = getattr(spec, field)
  ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
  check(ok and 0 <= value <= MAX_SEED, family,
        f"{field} must be an int in [0, 2**31 - 1], got {value!r}")


def check_widths(widths: Any, family: str, field: str, *, allow_empty: bool = True) -> None:
  """Checks a tuple of layer widths (``allow_empty``: a linear model is fine)."""
  check(isinstance(widths, tuple) and (allow_empty or bool(widths))
        and all(isinstance(w, int) and w >= 1 for w in widths), family,
        f"{field} must be a tuple of positive ints, got {widths!r}")


def check_activation(activation: str, family: str) -> None:
  check(activation in ACTIVATIONS, family,
        f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")


def dense_names(num_layers: int) -> list[str]:
  """The top-level parameter names flax gives ``num_layers`` unnamed ``nn.Dense`` layers.

  Flax numbers them in creation (forward) order, but pytrees sort dict keys,
  so ``Dense_10`` comes before ``Dense_2``: modules list their order explicitly.
  """
  return [f"Dense_{i}" for i in range(num_layers)]


def mlp_flops(sizes: Sequence[int]) -> float:
  """Forward FLOPs of a dense stack with layer sizes ``sizes`` (input first), per example."""
  return float(sum(2 * a * b for a, b in zip(sizes[:-1], sizes[1:])))


# Backward costs about twice the forward, so a training step is ~3x the forward.
TRAIN_STEP_FLOPS_FACTOR = 3.0
