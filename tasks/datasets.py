"""Embedded datasets: no download, seeded, deterministic, cached in memory, small.

Images (``ImageData``, float32 NHWC standardised by the training set's mean and
std, int32 labels):

- ``digits``: scikit-learn's bundled 8x8 digits (1,797 images, 10 classes),
  shuffled into train/eval by the seed, resized for 16/32 px.
- ``prototypes``: 10 classes, each a smooth random prototype; examples are
  shifted, noisy copies. The seed draws the prototypes.
- ``shapes``: 8 classes of geometric shapes (square, disc, ring, triangle,
  bars, plus, diagonal) at random positions and sizes, with noise.
- ``blobs``: 10 classes, each a random constellation of 3 Gaussian blobs,
  jittered per example.
- ``tfds:<name>``: any TensorFlow Datasets image dataset prepared in
  array_record format (see ``tasks.tfds_data``), read without TensorFlow.

Text (``TextData``, int32 token streams):

- ``stdlib_bytes``: bytes of the Python standard library's own ``.py`` files
  (present on every machine); the seed picks the files. Vocabulary 256.
- ``markov``: a first-order Markov chain over ``vocab_size`` symbols whose
  transition logits are N(0, 1) / temperature: higher temperature, higher
  entropy (``markov_entropy_rate`` gives the exact optimum loss).
- ``shakespeare_bytes``: tinyshakespeare, optional, read from
  ``$TINYSHAKESPEARE`` or /work/shared/data/tinyshakespeare.txt.
- ``tfds:<name>``: bytes of the first text feature of a tfds dataset (e.g. lm1b).
"""

from __future__ import annotations

import functools
import os
import pathlib
import sysconfig

import jax.numpy as jnp
import numpy as np

# tfds_data imports tensorflow_datasets only when a tfds dataset is read, so
# importing it here keeps `import tasks` fast.
from tasks import tfds_data
from tasks.base import TaskError
from tasks.data import ImageData, ImageInfo, TextData, resize_images  # re-exported

IMAGE_DATASETS = ("digits", "prototypes", "shapes", "blobs")
TEXT_DATASETS = ("stdlib_bytes", "markov", "shakespeare_bytes")
IMAGE_SIZES = (8, 16, 32)
# Procedural datasets: enough examples that a few hundred steps do not memorise them,
# few enough that a stacked meta-batch of datasets stays a few MB.
NUM_TRAIN, NUM_EVAL = 1024, 512
TEXT_TRAIN_BYTES, TEXT_EVAL_BYTES = 1 << 18, 1 << 15
SHAKESPEARE_PATHS = ("/work/shared/data/tinyshakespeare.txt",)


def is_tfds(name: str) -> bool:
  return name.startswith("tfds:")


# ---------------------------------------------------------------------------- images


def image_info(name: str) -> ImageInfo:
  """Classes and channels of an image dataset, without loading it."""
  if name in ("digits", "prototypes", "blobs"):
    return ImageInfo(10, 1)
  if name == "shapes":
    return ImageInfo(8, 1)
  if is_tfds(name):
    return tfds_data.image_info(name[len("tfds:"):])
  raise TaskError(f"unknown image dataset {name!r}; valid: {list(IMAGE_DATASETS)} "
                  "or 'tfds:<name>'.")


def image_dataset(name: str, image_size: int, seed: int) -> ImageData:
  """The image dataset ``name`` at ``image_size`` px, as device arrays (cached on host)."""
  arrays = _image_arrays(name, int(image_size), int(seed))
  return ImageData(*(jnp.asarray(a) for a in arrays))


@functools.lru_cache(maxsize=32)
def _image_arrays(name: str, size: int, seed: int) -> tuple[np.ndarray, ...]:
  if size < 4 or size > 64:
    raise TaskError(f"image_size must be in [4, 64], got {size}")
  info = image_info(name)
  rng = np.random.default_rng(seed)
  if name == "digits":
    train_x, train_y, eval_x, eval_y = _digits(rng, size)
  elif is_tfds(name):
    train_x, train_y, eval_x, eval_y = tfds_data.load_images(
        name[len("tfds:"):], size, seed, num_train=4 * NUM_TRAIN, num_eval=NUM_EVAL)
  else:
    make = {"prototypes": _prototypes, "shapes": _shapes, "blobs": _blobs}[name]
    train_rng, eval_rng = rng.spawn(2)
    protos = _class_params(name, rng, size, info.num_classes)
    train_x, train_y = make(train_rng, NUM_TRAIN, size, protos)
    eval_x, eval_y = make(eval_rng, NUM_EVAL, size, protos)
  mean, std = train_x.mean(), train_x.std() + 1e-6
  out = ((train_x - mean) / std, train_y, (eval_x - mean) / std, eval_y)
  out = tuple(np.ascontiguousarray(a, dtype=np.float32 if a.ndim == 4 else np.int32) for a in out)
  for a in out:
    a.flags.writeable = False  # cached and shared: nobody may mutate it
  return out


def _digits(rng: np.random.Generator, size: int) -> tuple[np.ndarray, ...]:
  from sklearn.datasets import load_digits  # bundled with scikit-learn: no network
  digits = load_digits()
  x = (digits.images / 16.0).astype(np.float32)[..., None]
  y = digits.target.astype(np.int32)
  order = rng.permutation(len(y))
  x, y = resize_images(x[order], size), y[order]
  n_eval = 300
  return x[n_eval:], y[n_eval:], x[:n_eval], y[:n_eval]


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
  u = (np.arange(size) + 0.5) / size * 2 - 1
  return np.meshgrid(u, u, indexing="xy")  # x (columns), y (rows), each [size, size]


def _class_params(name: str, rng: np.random.Generator, size: int, num_classes: int) -> np.ndarray:
  """What defines each class; drawn once per seed, shared by train and eval."""
  if name == "prototypes":
    coarse = rng.normal(size=(num_classes, 4, 4, 1)).astype(np.float32)
    return resize_images(coarse, size)[..., 0]
  if name == "blobs":
    return rng.uniform(-0.6, 0.6, size=(num_classes, 3, 2))
  return np.zeros((num_classes,))  # shapes: the classes are fixed geometry


def _prototypes(rng: np.random.Generator, n: int, size: int,
                protos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  y = rng.integers(len(protos), size=n)
  shift = rng.integers(-(size // 8), size // 8 + 1, size=(n, 2))
  rows = (np.arange(size)[None, :] - shift[:, :1]) % size
  cols = (np.arange(size)[None, :] - shift[:, 1:]) % size
  x = protos[y[:, None, None], rows[:, :, None], cols[:, None, :]]
  x = x + 0.7 * rng.normal(size=x.shape)
  return x[..., None], y


def _shapes(rng: np.random.Generator, n: int, size: int,
            protos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  y = rng.integers(len(protos), size=n)
  gx, gy = _grid(size)
  cx, cy = (rng.uniform(-0.3, 0.3, size=(2, n, 1, 1)))
  r = rng.uniform(0.35, 0.65, size=(n, 1, 1))
  dx, dy = gx[None] - cx, gy[None] - cy
  dist = np.sqrt(dx**2 + dy**2)
  w = 0.18  # stroke half-width, wide enough to survive 8 px
  hbar = (np.abs(dy) < w) & (np.abs(dx) < r)
  vbar = (np.abs(dx) < w) & (np.abs(dy) < r)
  masks = np.stack([
      np.maximum(np.abs(dx), np.abs(dy)) < r,  # square
      dist < r,  # disc
      np.abs(dist - r) < w,  # ring
      (dy < r) & (np.abs(dx) < (dy + r) / 2),  # triangle
      hbar,
      vbar,
      hbar | vbar,  # plus
      (np.abs(dx - dy) < w) & (np.abs(dx) < r),  # diagonal
  ])
  x = masks[y, np.arange(n)].astype(np.float32)
  x = x * rng.uniform(0.5, 1.0, size=(n, 1, 1)) + 0.15 * rng.normal(size=x.shape)
  return x[..., None], y


def _blobs(rng: np.random.Generator, n: int, size: int,
           centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  y = rng.integers(len(centers), size=n)
  gx, gy = _grid(size)
  c = centers[y] + 0.1 * rng.normal(size=(n, 3, 2))  # [n, 3, 2]
  d2 = (gx[None, None] - c[..., 0, None, None])**2 + (gy[None, None] - c[..., 1, None, None])**2
  x = np.exp(-d2 / (2 * 0.2**2)).sum(axis=1)
  x = x + 0.2 * rng.normal(size=x.shape)
  return x[..., None], y


# ---------------------------------------------------------------------------- text


def text_vocab_size(name: str, vocab_size: int) -> int:
  """The vocabulary a text dataset needs: 256 for bytes, ``vocab_size`` for markov."""
  return vocab_size if name == "markov" else 256


def text_dataset(name: str, seed: int, *, vocab_size: int = 256,
                 temperature: float = 1.0) -> TextData:
  """The token streams of a text dataset, as device arrays (cached on host)."""
  train, eval_ = _text_arrays(name, int(seed), int(vocab_size), float(temperature))
  return TextData(jnp.asarray(train), jnp.asarray(eval_))


@functools.lru_cache(maxsize=32)
def _text_arrays(name: str, seed: int, vocab_size: int,
                 temperature: float) -> tuple[np.ndarray, np.ndarray]:
  rng = np.random.default_rng(seed)
  if name == "markov":
    tokens = _markov_tokens(rng, vocab_size, temperature)
  elif name == "stdlib_bytes":
    tokens = _stdlib_bytes(rng, TEXT_TRAIN_BYTES + TEXT_EVAL_BYTES)
  elif name == "shakespeare_bytes":
    tokens = _shakespeare_bytes()
  elif is_tfds(name):
    tokens = tfds_data.load_text_bytes(name[len("tfds:"):], TEXT_TRAIN_BYTES + TEXT_EVAL_BYTES)
  else:
    raise TaskError(f"unknown text dataset {name!r}; valid: {list(TEXT_DATASETS)} "
                    "or 'tfds:<name>'.")
  tokens = tokens[:TEXT_TRAIN_BYTES + TEXT_EVAL_BYTES]
  n_eval = max(len(tokens) // 9, 1024)
  train = np.ascontiguousarray(tokens[:-n_eval], dtype=np.int32)
  eval_ = np.ascontiguousarray(tokens[-n_eval:], dtype=np.int32)
  train.flags.writeable = eval_.flags.writeable = False
  return train, eval_


def _stdlib_bytes(rng: np.random.Generator, num_bytes: int) -> np.ndarray:
  root = pathlib.Path(sysconfig.get_paths()["stdlib"])
  files = sorted(p for p in root.glob("*.py") if p.is_file())
  if not files:
    raise TaskError(f"no .py files under the standard library at {root}; use 'markov' text.")
  chunks, total = [], 0
  for i in rng.permutation(len(files)):
    data = files[i].read_bytes()
    chunks.append(data)
    total += len(data)
    if total >= num_bytes:
      break
  return np.frombuffer(b"".join(chunks)[:num_bytes], dtype=np.uint8)


def _shakespeare_bytes() -> np.ndarray:
  paths = [os.environ.get("TINYSHAKESPEARE", ""), *SHAKESPEARE_PATHS]
  for p in paths:
    if p and os.path.isfile(p):
      return np.frombuffer(pathlib.Path(p).read_bytes(), dtype=np.uint8)
  raise TaskError("tinyshakespeare not found; set $TINYSHAKESPEARE to a local copy of "
                  "tinyshakespeare.txt, or use the 'stdlib_bytes' or 'markov' text datasets.")


# Below this the chain is all but deterministic and exp(logits) nears overflow.
MIN_TEMPERATURE = 1e-3


def markov_transitions(seed: int, vocab_size: int, temperature: float) -> np.ndarray:
  """The chain's transition matrix [vocab, vocab] (rows sum to 1)."""
  rng = np.random.default_rng(seed)
  logits = rng.normal(size=(vocab_size, vocab_size)) / max(temperature, MIN_TEMPERATURE)
  p = np.exp(logits - logits.max(axis=1, keepdims=True))
  return p / p.sum(axis=1, keepdims=True)


def markov_entropy_rate(seed: int, vocab_size: int, temperature: float) -> float:
  """The chain's entropy rate in nats: the best achievable next-token loss."""
  p = markov_transitions(seed, vocab_size, temperature)
  evals, evecs = np.linalg.eig(p.T)
  pi = np.real(evecs[:, np.argmin(np.abs(evals - 1))])
  pi = pi / pi.sum()
  return float(-(pi[:, None] * p * np.log(np.maximum(p, 1e-30))).sum())


def _markov_tokens(rng: np.random.Generator, vocab_size: int, temperature: float) -> np.ndarray:
  if not 2 <= vocab_size <= 256:
    raise TaskError(f"markov vocab_size must be in [2, 256], got {vocab_size}")
  # The transition matrix comes from a child seed, so markov_entropy_rate can rebuild it.
  cum = np.cumsum(markov_transitions(int(rng.integers(2**31)), vocab_size, temperature), axis=1)
  # Many short chains stepped together: vectorised, so generation takes milliseconds.
  chains, length = 128, (TEXT_TRAIN_BYTES // 4 + TEXT_EVAL_BYTES // 4) // 128
  out = np.empty((chains, length), dtype=np.int32)
  state = rng.integers(vocab_size, size=chains)
  for t in range(length):
    out[:, t] = state
    u = rng.random(chains)[:, None]
    state = np.minimum((cum[state] < u).sum(axis=1), vocab_size - 1)
  return out.ravel()
