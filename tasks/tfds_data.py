"""TensorFlow Datasets without TensorFlow: array_record files read by ``tfds.data_source``.

Any tfds dataset prepared in the array_record format can feed a task: name it
``"tfds:<name>"`` in an image or text family's ``dataset`` field (e.g.
``ImageMLPSpec(dataset="tfds:mnist", image_size=16)``). The data directory is
``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``.

Tasks never let tfds download: offline, its retries take ~200 s and then raise
a misleading error. A missing dataset fails at once with a ``TaskError`` that
names the fixes:

- on a machine with internet: ``tfds build mnist --file_format=array_record
  --data_dir=DIR``, then copy DIR here;
- offline, from local files: :func:`prepare_from_manual_dir` (MNIST-style idx
  files, CIFAR-10 binary batches, or an ``.npz`` of arrays) or
  :func:`prepare_from_arrays` (any numpy arrays).

Images are read into memory (a seeded subset of the train split, up to a few
thousand examples), converted to float32, resized to the task's image size and
standardised; text becomes bytes. Larger-than-memory datasets stream through
:func:`iterate_batches`, a host iterator over the random-access source, and
reach a task as ``loss(params, key, batch)`` calls (no ``sample_batch``).
"""

from __future__ import annotations

import functools
import gzip
import json
import os
import pathlib
import types
from typing import Any, Iterator, Mapping

import numpy as np

from tasks.base import TaskError
from tasks.data import ImageInfo, resize_images

_FIX = ("Fixes: on a machine with internet run `tfds build {name} --file_format=array_record "
        "--data_dir=DIR` and copy DIR here; or build it offline from local files with "
        "tasks.tfds_data.prepare_from_manual_dir({name!r}, manual_dir=..., data_dir=...) "
        "or prepare_from_arrays(...); then set $TFDS_DATA_DIR (or pass data_dir=).")


def default_data_dir() -> str:
  return os.environ.get("TFDS_DATA_DIR", os.path.expanduser("~/tensorflow_datasets"))


def _tfds() -> Any:
  import tensorflow_datasets as tfds  # slow to import; only when a tfds dataset is used
  return tfds


def find_prepared(name: str, data_dir: str | None = None) -> pathlib.Path | None:
  """The newest prepared version directory of ``name`` (``name[/config][:version]``)."""
  root = pathlib.Path(data_dir or default_data_dir()) / name.split(":")[0]
  if not root.is_dir():
    return None
  infos = sorted(root.glob("**/dataset_info.json"))
  if ":" in name:
    infos = [p for p in infos if p.parent.name == name.split(":")[1]]
  infos = [p for p in infos if "incomplete" not in str(p)]
  return infos[-1].parent if infos else None


def check_available(name: str, data_dir: str | None = None) -> pathlib.Path:
  """The prepared array_record directory of ``name``, or a TaskError naming the fix."""
  data_dir = data_dir or default_data_dir()
  path = find_prepared(name, data_dir)
  if path is None:
    raise TaskError(f"tfds dataset {name!r} is not prepared under {data_dir}, and tasks never "
                    "download it (offline, tfds retries for ~200 s). " + _FIX.format(name=name))
  if not list(path.glob("*.array_record*")):
    raise TaskError(f"tfds dataset {name!r} at {path} is not in the array_record format, which "
                    "reading without TensorFlow needs. " + _FIX.format(name=name))
  _read_info(name, path)
  return path


def _read_info(name: str, path: pathlib.Path) -> dict[str, Any]:
  """``path/dataset_info.json``, parsed; a broken one (an interrupted copy or prepare)
  raises a TaskError naming the file, instead of a JSON error from deep inside tfds."""
  info = path / "dataset_info.json"
  try:
    data = json.loads(info.read_text())
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    data, why = None, f"cannot be read ({e})"
  else:
    why = f"holds a JSON {type(data).__name__}, not an object"
  if not isinstance(data, dict):
    raise TaskError(f"tfds dataset {name!r}: {info} {why}, so the prepared copy is broken "
                    f"(an interrupted copy or prepare?). Delete {path} and prepare it again. "
                    + _FIX.format(name=name))
  return data


def data_source(name: str, split: str, *, data_dir: str | None = None) -> Any:
  """``tfds.data_source`` for a prepared dataset: random access, no TensorFlow, no download."""
  # What tfds.data_source(name, data_dir=..., download=False) does, but from the
  # prepared directory itself: a locally prepared dataset may carry a version that
  # tfds's registered builder of the same name (e.g. mnist 3.0.1) does not know.
  return _source_from_dir(str(check_available(name, data_dir)), split)


@functools.lru_cache(maxsize=16)
def _builder(path: str) -> Any:
  try:
    return _tfds().builder_from_directory(path)
  except (ValueError, KeyError, TypeError, AttributeError) as e:
    # tfds found dataset_info.json readable but not a dataset it can describe.
    raise TaskError(f"tfds cannot read the prepared dataset at {path} ({type(e).__name__}: "
                    f"{e}); its dataset_info.json or features are broken. Delete {path} and "
                    "prepare it again (tasks.tfds_data.prepare_from_arrays or "
                    "prepare_from_manual_dir, or `tfds build`).") from None


def _source_from_dir(path: str, split: str) -> Any:
  builder = _builder(path)
  if split not in builder.info.splits:
    raise TaskError(f"split {split!r} not in {builder.name}; splits: {list(builder.info.splits)}")
  return builder.as_data_source(split=split)


def _feature_keys(name: str, features: Any) -> tuple[str, str]:
  keys = list(features.keys())
  image = next((k for k in ("image", "img") if k in keys), None)
  label = next((k for k in ("label", "labels") if k in keys), None)
  if image is None or label is None:
    raise TaskError(f"tfds dataset {name!r} has features {keys}; an image task needs 'image' "
                    "and 'label'.")
  return image, label


def image_info(name: str, data_dir: str | None = None) -> ImageInfo:
  """Number of classes and channels of a prepared tfds image dataset."""
  features = _builder(str(check_available(name, data_dir))).info.features
  image, label = _feature_keys(name, features)
  shape = features[image].shape
  return ImageInfo(int(features[label].num_classes), int(shape[-1]) if len(shape) == 3 else 1)


def _eval_split(splits: Any) -> str | None:
  return next((s for s in ("test", "validation", "valid") if s in splits), None)


def _read_images(source: Any, indices: np.ndarray, image_key: str,
                 label_key: str) -> tuple[np.ndarray, np.ndarray]:
  records = source.__getitems__([int(i) for i in indices])
  x = np.stack([np.asarray(r[image_key]) for r in records])
  y = np.asarray([int(r[label_key]) for r in records], dtype=np.int32)
  if x.ndim == 3:
    x = x[..., None]
  x = x.astype(np.float32) / (255.0 if x.dtype == np.uint8 else 1.0)
  return x, y


def load_images(name: str, image_size: int, seed: int, *, num_train: int, num_eval: int,
                data_dir: str | None = None) -> tuple[np.ndarray, ...]:
  """A seeded in-memory subset ``(train_x, train_y, eval_x, eval_y)``, resized, in [0, 1]."""
  path = str(check_available(name, data_dir))
  builder = _builder(path)
  image_key, label_key = _feature_keys(name, builder.info.features)
  rng = np.random.default_rng(seed)
  train = _source_from_dir(path, "train")
  eval_split = _eval_split(builder.info.splits)
  if eval_split is None:  # carve eval out of train
    order = rng.permutation(len(train))
    eval_idx, train_idx = order[:num_eval], order[num_eval:num_eval + num_train]
    eval_source = train
  else:
    eval_source = _source_from_dir(path, eval_split)
    train_idx = rng.permutation(len(train))[:num_train]
    eval_idx = rng.permutation(len(eval_source))[:num_eval]
  train_x, train_y = _read_images(train, np.sort(train_idx), image_key, label_key)
  eval_x, eval_y = _read_images(eval_source, np.sort(eval_idx), image_key, label_key)
  return resize_images(train_x, image_size), train_y, resize_images(eval_x, image_size), eval_y


def load_text_bytes(name: str, num_bytes: int, *, data_dir: str | None = None) -> np.ndarray:
  """The first ``num_bytes`` bytes of the train split's first text feature, joined by newlines."""
  path = str(check_available(name, data_dir))
  builder = _builder(path)
  keys = [k for k, f in builder.info.features.items() if type(f).__name__ == "Text"]
  if not keys:
    raise TaskError(f"tfds dataset {name!r} has no Text feature for a language-model task.")
  source, chunks, total = _source_from_dir(path, "train"), [], 0
  for i in range(len(source)):
    text = source[i][keys[0]]
    data = (text if isinstance(text, bytes) else str(text).encode()) + b"\n"
    chunks.append(data)
    total += len(data)
    if total >= num_bytes:
      break
  return np.frombuffer(b"".join(chunks)[:num_bytes], dtype=np.uint8)


def iterate_batches(name: str, split: str, batch_size: int, seed: int, *,
                    data_dir: str | None = None) -> Iterator[dict[str, np.ndarray]]:
  """Endless seeded host batches from a random-access source, for data too big for memory."""
  source = data_source(name, split, data_dir=data_dir)
  rng = np.random.default_rng(seed)
  while True:
    idx = rng.integers(len(source), size=batch_size)
    records = source.__getitems__([int(i) for i in idx])
    yield {k: np.stack([np.asarray(r[k]) for r in records]) for k in records[0]}


# ------------------------------------------------------------------ offline preparation


def prepare_from_arrays(name: str, splits: Mapping[str, Mapping[str, np.ndarray]], *,
                        data_dir: str | None = None, num_classes: int | None = None,
                        version: str = "1.0.0") -> pathlib.Path:
  """Writes numpy arrays as an array_record tfds dataset readable by ``tfds.data_source``.

  Args:
    name: the dataset name (snake_case), e.g. ``"mnist"``.
    splits: split name -> ``{"image": uint8/float32 [n, h, w, c], "label": int [n]}``
      (any keys; "label" becomes a ClassLabel).
    data_dir: where to write (default ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).
    num_classes: for "label"; default ``max(label) + 1``.
    version: the dataset version directory.

  Returns:
    The prepared directory. Features are tfds ``Tensor``s (raw arrays), so
    neither writing nor reading needs TensorFlow.
  """
  tfds = _tfds()
  data_dir = data_dir or default_data_dir()
  first = next(iter(splits.values()))
  if num_classes is None and "label" in first:
    num_classes = int(max(np.max(s["label"]) for s in splits.values())) + 1
  features = {}
  for key, arr in first.items():
    arr = np.asarray(arr)
    if key == "label":
      features[key] = tfds.features.ClassLabel(num_classes=num_classes)
    else:
      features[key] = tfds.features.Tensor(shape=arr.shape[1:], dtype=arr.dtype)

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(features))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {split: self._generate_examples(split) for split in splits}

  def _generate_examples(self, split):
    arrays = splits[split]
    for i in range(len(arrays[next(iter(arrays))])):
      yield i, {k: (int(v[i]) if k == "label" else np.asarray(v[i])) for k, v in arrays.items()}

  body = {"VERSION": tfds.core.Version(version), "_info": _info,
          "_split_generators": _split_generators, "_generate_examples": _generate_examples,
          "name": name}
  # Not registered with tfds: builders are made at run time, possibly twice per name.
  cls = types.new_class(f"_Local_{name}", (tfds.core.GeneratorBasedBuilder,),
                        {"skip_registration": True}, lambda ns: ns.update(body))
  builder = cls(data_dir=data_dir, file_format="array_record")
  builder.download_and_prepare()
  _builder.cache_clear()
  return pathlib.Path(builder.data_dir)


def _read_maybe_gz(path: pathlib.Path) -> bytes:
  return gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()


def _find(manual_dir: pathlib.Path, stem: str) -> pathlib.Path | None:
  for candidate in (stem, stem + ".gz", stem.replace("-idx", ".idx")):
    hits = sorted(manual_dir.rglob(candidate))
    if hits:
      return hits[0]
  return None


def _idx_array(path: pathlib.Path) -> np.ndarray:
  """Reads an MNIST idx file (big-endian header: magic, then one uint32 per dim)."""
  data = _read_maybe_gz(path)
  ndim = data[3]
  dims = np.frombuffer(data, dtype=">u4", count=ndim, offset=4)
  return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _from_idx(manual_dir: pathlib.Path) -> dict[str, dict[str, np.ndarray]] | None:
  names = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
           "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
  found = {s: (_find(manual_dir, i), _find(manual_dir, l)) for s, (i, l) in names.items()}
  if not all(i and l for i, l in found.values()):
    return None
  return {s: {"image": _idx_array(i)[..., None], "label": _idx_array(l).astype(np.int64)}
          for s, (i, l) in found.items()}


def _from_cifar_binary(manual_dir: pathlib.Path) -> dict[str, dict[str, np.ndarray]] | None:
  train = sorted(manual_dir.rglob("data_batch_*.bin"))
  test = sorted(manual_dir.rglob("test_batch.bin"))
  if not train or not test:
    return None

  def read(paths):  # records of 1 label byte + 3x32x32 CHW pixel bytes
    raw = np.concatenate([np.frombuffer(p.read_bytes(), np.uint8) for p in paths])
    raw = raw.reshape(-1, 1 + 3 * 32 * 32)
    image = raw[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return {"image": np.ascontiguousarray(image), "label": raw[:, 0].astype(np.int64)}

  return {"train": read(train), "test": read(test)}


def _from_npz(manual_dir: pathlib.Path) -> dict[str, dict[str, np.ndarray]] | None:
  files = sorted(manual_dir.glob("*.npz"))
  if not files:
    return None
  with np.load(files[0], allow_pickle=False) as z:  # never unpickle downloaded files
    splits = {}
    for split in ("train", "test", "validation"):
      if f"x_{split}" in z:
        splits[split] = {"image": z[f"x_{split}"], "label": z[f"y_{split}"].astype(np.int64)}
    return splits or None


def prepare_from_manual_dir(name: str, manual_dir: str, *, data_dir: str | None = None,
                            num_classes: int | None = None) -> pathlib.Path:
  """Prepares ``name`` from files already on this machine (no network).

  Understands, under ``manual_dir``: MNIST-style idx files (mnist, fashion_mnist,
  kmnist: ``train-images-idx3-ubyte[.gz]`` ...), CIFAR-10 binary batches
  (``data_batch_*.bin``, ``test_batch.bin``), or an ``.npz`` with
  ``x_train, y_train, x_test, y_test``.
  """
  path = pathlib.Path(manual_dir)
  if not path.is_dir():
    raise TaskError(f"manual_dir {manual_dir!r} is not a directory.")
  for reader in (_from_idx, _from_cifar_binary, _from_npz):
    splits = reader(path)
    if splits:
      return prepare_from_arrays(name, splits, data_dir=data_dir, num_classes=num_classes)
  raise TaskError(f"no MNIST idx files, CIFAR-10 binary batches or .npz (x_train, y_train, "
                  f"x_test, y_test) under {manual_dir!r}.")


def dataset_info_json(name: str, data_dir: str | None = None) -> dict[str, Any]:
  """The prepared dataset's ``dataset_info.json`` (for logging what a task trained on)."""
  path = check_available(name, data_dir)
  return _read_info(name, path)
