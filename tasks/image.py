"""Image tasks: the abstract ``ImageTask`` and the classifier of image_mlp and image_conv.

``ImageTask`` holds what every task on an ``ImageData`` repeats: batches of
images (with labels or without), drawn in memory, and the example image that
``init`` traces the model with. The classifier here, the autoencoder
(``tasks.autoencoder``) and the VAE (``tasks.vae``) add only their loss and
reference loss. The checks and helpers every image family's ``build`` shares
live here too.

The model (a flax.linen module, hashable) is static pytree metadata; the spec's
continuous fields and the in-memory dataset are leaves.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from tasks import common, datasets, dense
from tasks.base import Params, PRNGKey, Split
from tasks.datasets import ImageData
from tasks.model import ModelTask


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


class ImageTask(ModelTask):
  """Abstract: a model task on an image dataset; ``spec`` has batch_size and init_scale.

  Concrete subclasses set ``with_labels`` and define ``loss``.
  """
  # Whether batches carry "label" (classifiers) or only "image" (autoencoders).
  with_labels: ClassVar[bool]

  @property
  def batch_spec(self) -> dict[str, jax.ShapeDtypeStruct]:
    return image_batch_spec(self.data, self.spec.batch_size, labels=self.with_labels)

  def sample_batch(self, key: PRNGKey, split: Split = "train") -> dict[str, jax.Array]:
    return sample_image_batch(self.data, key, split, self.spec.batch_size,
                              labels=self.with_labels)

  def example_inputs(self) -> tuple[jax.Array, ...]:
    image = jnp.zeros((1, *self.data.train_x.shape[-3:]), jnp.float32)
    return (image, *self.extra_inputs())

  def extra_inputs(self) -> tuple[jax.Array, ...]:
    """Model inputs besides the image, batch size 1, for ``init``; the VAE adds its noise."""
    return ()


@common.task_dataclass()
class ImageClassifierTask(ImageTask):
  """Softmax cross-entropy of ``model`` (images -> ``[batch, num_outputs]`` logits)."""
  with_labels = True
  has_predictions = True

  @property
  def num_classes(self) -> int:
    return self.model.num_outputs

  def predict(self, params: Params, batch: dict[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
    return self.apply(params, batch["image"]), batch["label"]

  def loss(self, params: Any, key: PRNGKey, batch: dict[str, jax.Array]) -> jax.Array:
    del key
    return common.softmax_xent(*self.predict(params, batch))

  def dense_structure(self) -> Any:
    """Declared when the model is a dense stack (``image_mlp``'s MLP), not for a conv net."""
    layers = getattr(self.model, "dense_layers", None)
    if layers is None:
      return None
    return dense.DenseStructure(
        layers(), "softmax_xent",
        inputs=lambda batch: batch["image"].reshape((batch["image"].shape[0], -1)),
        targets=lambda batch: batch["label"])

  def reference_loss(self) -> float:
    # The loss of predicting the uniform distribution.
    return math.log(self.num_classes)


# ---------------------------------------------------------------- what every family shares


def check_image_spec(spec: Any, spec_type: type, family: str, *, widths: str,
                     allow_empty_widths: bool = True) -> None:
  """Checks the fields every image family shares, and its tuple of layer ``widths``."""
  common.check_spec_type(spec, spec_type, family)
  common.check(spec.dataset in datasets.IMAGE_DATASETS or datasets.is_tfds(spec.dataset), family,
               f"dataset must be one of {list(datasets.IMAGE_DATASETS)} or 'tfds:<name>', "
               f"got {spec.dataset!r}")
  common.check(isinstance(spec.image_size, int) and 4 <= spec.image_size <= 64, family,
               f"image_size must be an int in [4, 64], got {spec.image_size!r}")
  common.check(isinstance(spec.batch_size, int) and spec.batch_size >= 1, family,
               f"batch_size must be a positive int, got {spec.batch_size!r}")
  common.check_float(spec, family, "init_scale", low=0.0, low_open=True)
  common.check_seed(spec, family, "data_seed")
  common.check_widths(getattr(spec, widths), family, widths, allow_empty=allow_empty_widths)
  common.check_activation(spec.activation, family)


def sample_image_fields(rng: Any) -> dict[str, Any]:
  """The dataset fields every image family draws first: ``dataset`` and ``image_size``."""
  return dict(dataset=common.choice(rng, datasets.IMAGE_DATASETS),
              image_size=common.choice(rng, (8, 8, 16)))


def image_data(spec: Any) -> ImageData:
  """The dataset an image spec names, at its size and seed."""
  return datasets.image_dataset(spec.dataset, spec.image_size, spec.data_seed)


def num_classes(spec: Any) -> int:
  return datasets.image_info(spec.dataset).num_classes


def channels_guess(dataset: str) -> int:
  """Input channels for the cost model, which must not load data (or tfds metadata).

  Assumes RGB for tfds datasets: the embedded ones are grayscale.
  """
  return 3 if datasets.is_tfds(dataset) else 1
