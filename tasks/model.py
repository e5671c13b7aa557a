"""``ModelTask``: the abstract base of tasks whose parameters are one flax module's.

The image tasks (``tasks.image.ImageTask``: classifiers, autoencoders, VAEs)
and the language models (``tasks.lm.LanguageModelTask``) are all "a spec, an
in-memory dataset, a flax module and a name". This base holds those four
fields and what follows from them alone: the name, ``init`` (flax's init from
example inputs, scaled by the spec's ``init_scale``), applying the module, and
the layer order, which the module states from its architecture.

Following equinox's abstract/final rule, the fields are declared here once,
concrete tasks add none and are never subclassed. The base is a plain frozen
dataclass (it is never instantiated, so it is no pytree); each concrete
subclass registers with ``tasks.common.task_dataclass``, which keeps
``model`` and ``label`` static (pytree metadata) and ``spec`` and ``data``
leaves (subtrees), so tasks of one family stack and vmap.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any

import flax.linen as nn
import jax

from tasks import common
from tasks.base import Params, PRNGKey, Task


@dataclasses.dataclass(frozen=True)
class ModelTask(Task):
  """Abstract: a task whose parameters are those of ``model``.

  ``model`` must also name its top-level parameter groups in forward order,
  with a plain method ``layer_order() -> Sequence[str]`` (computed from its
  attributes, as each built-in module does).
  """
  spec: Any  # the family's spec; has init_scale (and whatever the task reads)
  data: Any  # the in-memory dataset: array leaves, so sample_batch is jittable
  model: nn.Module = common.static_field()  # hashable, shapes depend on it: metadata
  label: str = common.static_field()  # the task's name

  @property
  def name(self) -> str:
    return self.label

  @abc.abstractmethod
  def example_inputs(self) -> tuple[jax.Array, ...]:
    """Inputs with batch size 1 that ``init`` traces ``model`` with."""

  def init(self, key: PRNGKey) -> dict[str, Any]:
    params = common.init_module(self.model, key, *self.example_inputs())
    return common.scale_init(params, self.spec.init_scale)

  def apply(self, params: Params, *inputs: jax.Array) -> Any:
    """``model`` applied to ``inputs`` with ``params``."""
    return self.model.apply({"params": params}, *inputs)

  def layer_order(self, params: Params) -> list[str]:
    del params  # the architecture fixes the order, whatever the values
    return list(self.model.layer_order())
