"""What a task's in-memory data is: the dataset containers and the image resize.

Both sources of datasets build on this module: ``datasets.py`` (the embedded
ones) and ``tfds_data.py`` (TensorFlow Datasets read without TensorFlow).
``datasets.py`` dispatches ``"tfds:<name>"`` to ``tfds_data.py``, so what
both need sits below them here, and the imports point one way.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class ImageData(NamedTuple):
  train_x: jax.Array  # float32 [n, h, w, c]
  train_y: jax.Array  # int32 [n]
  eval_x: jax.Array
  eval_y: jax.Array


class TextData(NamedTuple):
  train: jax.Array  # int32 [n]
  eval: jax.Array  # int32 [m]


class ImageInfo(NamedTuple):
  num_classes: int
  channels: int


def resize_images(x: np.ndarray, size: int) -> np.ndarray:
  """Bilinear resize of NHWC images to ``size`` x ``size`` (area-style when shrinking)."""
  if x.shape[1] == size and x.shape[2] == size:
    return x.astype(np.float32)
  shape = (x.shape[0], size, size, x.shape[3])
  return np.asarray(jax.image.resize(jnp.asarray(x, jnp.float32), shape, "linear", antialias=True))
