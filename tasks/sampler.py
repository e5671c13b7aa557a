"""The random task sampler: named distributions over families, with a cost cap.

Every named distribution (family weights + FLOPs cap) lives in
``DISTRIBUTIONS`` below; users add their own with ``register_distribution``.
``sample_task`` draws a family by weight, then a spec from that family's ranges,
and redraws the spec (same family) while the spec's estimated
FLOPs per training step exceed the cap. FLOPs come from ``family.flops(spec)``:
an estimate from the spec alone, never a timing.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import jax
import numpy as np

from tasks import common, registry
from tasks.base import PRNGKey, Spec, TaskError


@dataclasses.dataclass(frozen=True)
class Distribution:
  """Family weights (need not sum to 1) and the FLOPs-per-step cap."""
  weights: tuple[tuple[str, float], ...]
  max_flops: float

  @classmethod
  def of(cls, weights: Mapping[str, float], max_flops: float) -> "Distribution":
    return cls(tuple(sorted(weights.items())), float(max_flops))


# Caps are FLOPs per training step (forward + backward). 5e7 keeps a step of
# every default task in the low milliseconds on one CPU core, so meta-training
# can unroll hundreds of inner steps per task.
DISTRIBUTIONS: dict[str, Distribution] = {
    "default": Distribution.of({
        "quadratic": 0.1,
        "image_mlp": 0.3,
        "image_conv": 0.15,
        "rnn_lm": 0.15,
        "transformer_lm": 0.1,
        "autoencoder": 0.1,
        "vae": 0.1,
    }, max_flops=5e7),
    "small": Distribution.of({
        "quadratic": 0.2,
        "image_mlp": 0.4,
        "image_conv": 0.1,
        "rnn_lm": 0.1,
        "transformer_lm": 0.05,
        "autoencoder": 0.1,
        "vae": 0.05,
    }, max_flops=5e6),
    "quadratic": Distribution.of({"quadratic": 1.0}, max_flops=1e7),
    "image": Distribution.of({"image_mlp": 0.6, "image_conv": 0.4}, max_flops=5e7),
    "language": Distribution.of({"rnn_lm": 0.5, "transformer_lm": 0.5}, max_flops=5e7),
}


def register_distribution(name: str, distribution: Distribution) -> Distribution:
  """Adds a named distribution; a duplicate name raises."""
  if name in DISTRIBUTIONS:
    raise TaskError(f"distribution {name!r} already exists; pick another name.")
  DISTRIBUTIONS[name] = distribution
  return distribution


def distributions() -> list[str]:
  """Names of the task distributions, sorted."""
  return sorted(DISTRIBUTIONS)


def get_distribution(distribution: str | Distribution) -> Distribution:
  if isinstance(distribution, Distribution):
    return distribution
  if distribution not in DISTRIBUTIONS:
    raise TaskError(f"unknown task distribution {distribution!r}; valid: {distributions()}.")
  return DISTRIBUTIONS[distribution]


def sample_task(key: PRNGKey, distribution: str | Distribution = "default", *,
                max_tries: int = 100) -> tuple[str, Spec]:
  """Draws ``(family_name, spec)`` from a named distribution, under its FLOPs cap.

  Examples:
    >>> import jax, tasks
    >>> name, spec = tasks.sample_task(jax.random.key(0), "quadratic")
    >>> name
    'quadratic'
  """
  dist = get_distribution(distribution)
  names = [n for n, _ in dist.weights]
  for n in names:
    registry.get_family(n)  # an unregistered family fails here, naming the valid ones
  probs = np.array([w for _, w in dist.weights], dtype=np.float64)
  probs = probs / probs.sum()
  # One host RNG drives the family choice and the per-family keys: a device
  # round trip per draw keeps sampling thousands of specs at ~1 ms each.
  rng = common.host_rng(key)
  # The family is drawn once and only its spec is redrawn, so the family
  # weights hold exactly whatever the cap rejects.
  name = names[int(rng.choice(len(names), p=probs))]
  family = registry.get_family(name)
  for _ in range(max_tries):
    spec = family.sample(jax.random.key(int(rng.integers(2**31))))
    if family.flops(spec) <= dist.max_flops:
      return name, spec
  raise TaskError(f"no {name} spec under the cap of {dist.max_flops:g} FLOPs/step in "
                  f"{max_tries} draws; raise max_flops or narrow the family's ranges.")


def resample_dynamic(key: PRNGKey, family_name: str, spec: Spec) -> Spec:
  """A fresh spec of the same family that keeps ``spec``'s static fields.

  Tasks built from the result stack and vmap with ``spec``'s task, so a
  meta-batch can be ``[spec] + [resample_dynamic(k, name, spec) for k in keys]``.
  """
  family = registry.get_family(family_name)
  fresh = family.sample(key)
  return dataclasses.replace(fresh, **{f: getattr(spec, f) for f in family.static_fields})


def static_signature(family_name: str, spec: Spec) -> tuple:
  """The key to group specs by: tasks with equal signatures can be stacked."""
  family = registry.get_family(family_name)
  return (family_name, *(getattr(spec, f) for f in family.static_fields))
