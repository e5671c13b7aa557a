"""Image classification tasks: one Task class shared by image_mlp and image_conv.

The model (a flax.linen module, hashable) is static pytree metadata; the spec's
continuous fields and the in-memory dataset are leaves.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from tasks import common
from tasks.base import PRNGKey, Split, Task
from tasks.datasets import ImageData


def sample_image_batch(data: ImageData, key: PRNGKey, split: Split, batch_size: int, *,
                       labels: bool = True) -> dict[str, jax.Array]:
  """A batch drawn uniformly with replacement from the split; pure and jittable."""
  x, y = (data.train_x, data.train_y) if split == "train" else (data.eval_x, data.eval_y)
  idx = jax.random.randint(key, (batch_size,), 0, x.shape[0])
  batch = {"image": x[idx]}
  if labels:
    batch["label"] = y[idx]
  return batch


def image_batch_spec(data: ImageData, batch_size: int, *,
                     labels: bool = True) -> dict[str, jax.ShapeDtypeStruct]:
  spec = {"image": jax.ShapeDtypeStruct((batch_size, *data.train_x.shape[-3:]), jnp.float32)}
  if labels:
    spec["label"] = jax.ShapeDtypeStruct((batch_size,), jnp.int32)
  return spec


@common.task_dataclass(static=("model", "label", "num_classes"))
class ImageClassifierTask(Task):
  """Softmax cross-entropy of ``model`` on an image dataset."""
  spec: Any  # has batch_size (static) and init_scale
  data: ImageData
  model: nn.Module
  label: str
  num_classes: int

  @property
  def name(self) -> str:
    return self.label

  @property
  def batch_spec(self) -> dict[str, jax.ShapeDtypeStruct]:
    return image_batch_spec(self.data, self.spec.batch_size)

  def init(self, key: PRNGKey) -> dict[str, Any]:
    example = jnp.zeros((1, *self.data.train_x.shape[-3:]), jnp.float32)
    return common.scale_init(common.init_module(self.model, key, example), self.spec.init_scale)

  def loss(self, params: Any, key: PRNGKey, batch: dict[str, jax.Array]) -> jax.Array:
    del key
    logits = self.model.apply({"params": params}, batch["image"])
    return common.softmax_xent(logits, batch["label"])

  def sample_batch(self, key: PRNGKey, split: Split = "train") -> dict[str, jax.Array]:
    return sample_image_batch(self.data, key, split, self.spec.batch_size)

  def reference_loss(self) -> float:
    # The loss of predicting the uniform distribution.
    return math.log(self.num_classes)
