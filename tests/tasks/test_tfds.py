"""The tfds path on a dataset the test builds locally in array_record format."""

import subprocess
import sys
import time

import jax
import numpy as np
import pytest

import tasks
from tasks import tfds_data


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
  data_dir = tmp_path_factory.mktemp("tfds")
  rng = np.random.default_rng(0)

  def split(n):  # 3 classes: dark, mid and bright images
    label = rng.integers(0, 3, n)
    image = (label[:, None, None, None] * 100 + rng.integers(0, 40, (n, 12, 12, 1)))
    return {"image": image.astype(np.uint8), "label": label}

  tfds_data.prepare_from_arrays("toy_images", {"train": split(64), "test": split(32)},
                                data_dir=str(data_dir))
  return str(data_dir)


def test_prepared_dataset_reads_through_data_source(tfds_dir):
  source = tfds_data.data_source("toy_images", "train", data_dir=tfds_dir)
  assert len(source) == 64
  assert source[0]["image"].shape == (12, 12, 1)
  assert tfds_data.image_info("toy_images", tfds_dir) == (3, 1)
  x = tfds_data.load_images("toy_images", 8, 0, num_train=40, num_eval=16, data_dir=tfds_dir)
  assert [a.shape for a in x] == [(40, 8, 8, 1), (40,), (16, 8, 8, 1), (16,)]
  again = tfds_data.load_images("toy_images", 8, 0, num_train=40, num_eval=16,
                                data_dir=tfds_dir)
  for a, b in zip(x, again):
    np.testing.assert_array_equal(a, b)


def test_a_task_trains_on_a_tfds_dataset(tfds_dir, monkeypatch):
  monkeypatch.setenv("TFDS_DATA_DIR", tfds_dir)
  spec = tasks.ImageMLPSpec(dataset="tfds:toy_images", image_size=8, hidden_sizes=(16,))
  task = tasks.build_task("image_mlp", spec)
  params = task.init(jax.random.key(0))
  batch = task.sample_batch(jax.random.key(1))
  assert batch["image"].shape == (32, 8, 8, 1)
  assert np.isfinite(float(task.loss(params, jax.random.key(2), batch)))
  assert tasks.spec_from_json(tasks.spec_to_json(spec)) == spec


def test_manual_dir_with_mnist_idx_files(tmp_path):
  manual = tmp_path / "manual"
  manual.mkdir()
  rng = np.random.default_rng(0)
  for prefix, n in (("train", 20), ("t10k", 10)):
    images = rng.integers(0, 255, (n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    header = np.array([0x803, n, 28, 28], ">u4").tobytes()
    (manual / f"{prefix}-images-idx3-ubyte").write_bytes(header + images.tobytes())
    header = np.array([0x801, n], ">u4").tobytes()
    (manual / f"{prefix}-labels-idx1-ubyte").write_bytes(header + labels.tobytes())
  tfds_data.prepare_from_manual_dir("mnist", str(manual), data_dir=str(tmp_path / "data"),
                                    num_classes=10)
  source = tfds_data.data_source("mnist", "test", data_dir=str(tmp_path / "data"))
  assert len(source) == 10 and source[3]["image"].shape == (28, 28, 1)


def test_missing_dataset_fails_fast_naming_the_fix(tmp_path):
  start = time.monotonic()
  with pytest.raises(tasks.TaskError, match="tfds build mnist --file_format=array_record"):
    tfds_data.data_source("mnist", "train", data_dir=str(tmp_path))
  assert time.monotonic() - start < 5.0


def test_missing_dataset_in_a_spec_fails_fast(tmp_path, monkeypatch):
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
  spec = tasks.ImageMLPSpec(dataset="tfds:not_here_ds", image_size=8)
  with pytest.raises(tasks.TaskError, match="not prepared"):
    tasks.build_task("image_mlp", spec)


def test_tensorflow_datasets_does_not_import_tensorflow():
  code = ("import sys, tensorflow_datasets, tasks.tfds_data; "
          "print('tensorflow' in sys.modules)")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  assert out.stdout.strip().endswith("False")


def test_import_tasks_does_not_import_tensorflow_datasets():
  # datasets.py imports tfds_data at module level (no hidden import cycle); tfds_data
  # must import tensorflow_datasets only when a tfds dataset is read, as it is slow.
  code = "import sys, tasks; print('tensorflow_datasets' in sys.modules)"
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  assert out.stdout.strip().endswith("False")


def _fake_prepared(root, info_text):
  """A prepared-looking dataset directory whose dataset_info.json holds ``info_text``."""
  version = root / "broken_ds" / "1.0.0"
  version.mkdir(parents=True)
  (version / "broken_ds-train.array_record-00000-of-00001").write_bytes(b"")
  (version / "dataset_info.json").write_text(info_text)
  return version


@pytest.mark.parametrize("info_text, why", [
    ('{"name": "broken_ds", "splits": [', "cannot be read"),  # an interrupted copy
    ("[]", "holds a JSON list"),
    ("{}", "tfds cannot read the prepared dataset"),  # an object, but not a dataset's
])
def test_a_broken_dataset_info_json_names_the_file_and_the_fix(tmp_path, monkeypatch,
                                                                info_text, why):
  version = _fake_prepared(tmp_path, info_text)
  with pytest.raises(tasks.TaskError, match="prepare it again") as e:
    tfds_data.image_info("broken_ds", str(tmp_path))
  assert why in str(e.value) and str(version) in str(e.value)
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
  spec = tasks.ImageMLPSpec(dataset="tfds:broken_ds", image_size=8)
  with pytest.raises(tasks.TaskError, match="prepare it again"):
    tasks.build_task("image_mlp", spec)
