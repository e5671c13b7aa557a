"""Embedded datasets: deterministic by seed, sized and typed as documented."""

import jax
import numpy as np
import pytest

import tasks
from tasks import datasets


@pytest.mark.parametrize("name", datasets.IMAGE_DATASETS)
@pytest.mark.parametrize("size", [8, 16])
def test_image_datasets_are_deterministic_by_seed(name, size):
  a = datasets._image_arrays(name, size, 0)
  datasets._image_arrays.cache_clear()  # rebuild from scratch, not from the cache
  b = datasets._image_arrays(name, size, 0)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)
  train_x, train_y, eval_x, eval_y = a
  assert train_x.shape[1:] == (size, size, 1) and train_x.dtype == np.float32
  assert train_y.dtype == np.int32 and eval_x.shape[0] == eval_y.shape[0]
  num_classes = datasets.image_info(name).num_classes
  assert set(np.unique(train_y)) == set(range(num_classes))
  assert abs(float(train_x.mean())) < 1e-3 and abs(float(train_x.std()) - 1) < 1e-2
  c = datasets._image_arrays(name, size, 1)
  assert not np.array_equal(a[0], c[0])


def test_procedural_images_at_32px():
  x = datasets._image_arrays("shapes", 32, 0)[0]
  assert x.shape == (datasets.NUM_TRAIN, 32, 32, 1)


@pytest.mark.parametrize("name,vocab", [("stdlib_bytes", 256), ("markov", 16)])
def test_text_datasets_are_deterministic_by_seed(name, vocab):
  a = datasets._text_arrays(name, 0, vocab, 1.0)
  datasets._text_arrays.cache_clear()
  b = datasets._text_arrays(name, 0, vocab, 1.0)
  np.testing.assert_array_equal(a[0], b[0])
  np.testing.assert_array_equal(a[1], b[1])
  assert a[0].dtype == np.int32 and 0 <= a[0].min() and a[0].max() < vocab
  assert len(a[0]) > 10_000 and len(a[1]) >= 1024
  assert not np.array_equal(a[0][:1000], datasets._text_arrays(name, 1, vocab, 1.0)[0][:1000])


def test_markov_temperature_controls_entropy():
  low = datasets.markov_entropy_rate(0, 16, 0.3)
  high = datasets.markov_entropy_rate(0, 16, 3.0)
  assert 0 < low < high < np.log(16)


def test_shakespeare_is_optional(monkeypatch):
  monkeypatch.setenv("TINYSHAKESPEARE", "")
  monkeypatch.setattr(datasets, "SHAKESPEARE_PATHS", ("/nonexistent/tiny.txt",))
  datasets._text_arrays.cache_clear()
  with pytest.raises(tasks.TaskError, match="TINYSHAKESPEARE"):
    datasets._text_arrays("shakespeare_bytes", 0, 256, 1.0)


def test_batches_are_deterministic_by_key():
  task = tasks.build_task("image_mlp")
  a = [b["label"] for _, b in zip(range(3), task.batches(jax.random.key(0), split="train"))]
  b = [b["label"] for _, b in zip(range(3), task.batches(jax.random.key(0), split="train"))]
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)
  e = next(task.batches(jax.random.key(0), split="eval"))
  assert e["image"].shape == task.batch_spec["image"].shape
