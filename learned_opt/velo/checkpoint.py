"""Reads learned_optimization's ``ParameterCheckpoint`` files (VeLO's ``params``).

The released VeLO weights are ``flax.serialization.to_bytes`` of
``gradient_learner.ParameterCheckpoint(theta, gen_id, step)``: ONE msgpack map
``{"params": theta, "gen_id": str, "step": int}``, in which every array is a
msgpack extension of type 1 whose payload is the msgpack list
``[shape, dtype name, raw C-order little-endian bytes]``. Plain ``msgpack`` and
numpy decode it; TensorFlow, gin, haiku and flax are not needed.

Older files differ in two ways, both accepted here:

* the ``(theta, "", 0)`` tuple of the "no_config" VeLO checkpoints is stored as
  a map with keys ``"0"``, ``"1"``, ``"2"``;
* namedtuples (``lstm_init_state``) were stored as
  ``{"name": ..., "fields": {"0": "hidden", ...}, "values": {"0": ND, ...}}``.

The haiku theta is renamed to our own layout (see ``hyper_v2.py``):
``rnn_params/linear`` (the mixing layer whose output HyperV2 overwrites) is
validated and dropped, the 14 first-layer blocks ``w0__0..w0__13`` are
concatenated in *numeric* order (on disk they sort lexicographically).
"""

from __future__ import annotations

import os
import re
import warnings
from typing import Any

import jax.numpy as jnp
import msgpack
import numpy as np

from learned_opt.base import LearnedOptimizerError
from learned_opt.velo import hyper_v2

# flax.serialization's extension codes.
_EXT_NDARRAY = 1
_EXT_NPSCALAR = 3

_FIX = ("learned_opt.velo.load_checkpoint reads the `params` file of a learned_optimization "
        "HyperV2 (VeLO) checkpoint, e.g. the released `pretrained_lopts/aug12_continue_on_bigger_"
        "2xbs_200kstep_bigproblem_v2_5620/params`.")


def _error(path: str, what: str) -> LearnedOptimizerError:
  return LearnedOptimizerError(f"{path}: {what} {_FIX}")


def _decode_array(payload: bytes, path: str) -> np.ndarray:
  try:
    shape, dtype, data = msgpack.unpackb(payload, raw=True)
    shape = tuple(int(s) for s in shape)
    dtype = np.dtype(dtype.decode() if isinstance(dtype, bytes) else dtype)
  except Exception as e:  # any malformed payload is a corrupt file
    raise _error(path, f"corrupt array record ({type(e).__name__}: {e}); the file is damaged, "
                 "download it again.") from None
  if len(data) != int(np.prod(shape)) * dtype.itemsize:
    raise _error(path, f"corrupt array record: shape {shape} of {dtype} needs "
                 f"{int(np.prod(shape)) * dtype.itemsize} bytes but {len(data)} are stored; "
                 "the file is damaged, download it again.")
  return np.frombuffer(data, dtype=dtype.newbyteorder("<")).reshape(shape).astype(dtype)


def read_msgpack_tree(path: str | os.PathLike[str]) -> dict[str, Any]:
  """Decodes a flax msgpack file into nested dicts of numpy arrays.

  Args:
    path: the file.

  Returns:
    The top-level map, with every array record decoded to ``np.ndarray``.

  Raises:
    LearnedOptimizerError: for a missing, non-msgpack, truncated or corrupt file.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise _error(path, "no such file.")
  with open(path, "rb") as f:
    raw = f.read()
  # A msgpack map starts with 0x80-0x8f (fixmap), 0xde (map16) or 0xdf (map32).
  if not raw or not (0x80 <= raw[0] <= 0x8f or raw[0] in (0xde, 0xdf)):
    raise _error(path, "is not a learned_optimization checkpoint (it does not start with a "
                 "msgpack map).")

  def ext_hook(code: int, payload: bytes) -> Any:
    if code == _EXT_NDARRAY:
      return _decode_array(payload, path)
    if code == _EXT_NPSCALAR:
      return _decode_array(payload, path).reshape(())
    raise _error(path, f"unknown msgpack extension type {code}; not a flax checkpoint.")

  try:
    tree = msgpack.unpackb(raw, ext_hook=ext_hook, raw=False, strict_map_key=False)
  except LearnedOptimizerError:
    raise
  except msgpack.exceptions.ExtraData:
    raise _error(path, "has trailing bytes after the checkpoint map; the file is corrupt or "
                 "two files were concatenated. Download it again.") from None
  except (ValueError, msgpack.exceptions.UnpackException) as e:
    if "incomplete" in str(e).lower() or isinstance(e, msgpack.exceptions.OutOfData):
      raise _error(path, f"is truncated ({len(raw)} bytes; msgpack: {e}); the download or copy "
                   "did not finish. Download it again.") from None
    raise _error(path, f"is corrupt (msgpack: {e}); download it again.") from None
  if not isinstance(tree, dict):
    raise _error(path, "is not a learned_optimization checkpoint (top level is not a map).")
  return tree


def _unwrap_checkpoint(tree: dict[str, Any], path: str) -> dict[str, Any]:
  """Returns theta from a ParameterCheckpoint map (either layout), or a bare theta."""
  if "params" in tree:
    return tree["params"]
  if "0" in tree and set(tree) <= {"0", "1", "2"}:  # the older (theta, gen_id, step) tuple
    warnings.warn(
        f"{path}: older (theta, gen_id, step) checkpoint layout, as in learned_optimization's "
        "pretrained_lopts/no_config/ files. learned_optimization runs those with "
        "HyperV2(use_bugged_next_lstm_state=True), which never advances the LSTM state; "
        "learned_opt's velo computes the released VeLO function (state advanced), so its "
        "updates for this file differ from learned_optimization's.", UserWarning, stacklevel=3)
    return tree["0"]
  if "rnn_params" in tree or "ff_mod_stack" in tree:
    return tree
  raise _error(path, f"has top-level keys {sorted(tree)[:8]}, expected a ParameterCheckpoint "
               "({'params', 'gen_id', 'step'} or the older {'0', '1', '2'}).")


def _lstm_state(node: Any, path: str) -> tuple[np.ndarray, np.ndarray]:
  """Reads ``lstm_init_state`` as a dict or as an old-style serialised namedtuple."""
  if isinstance(node, dict) and "fields" in node and "values" in node:
    node = {node["fields"][k]: v for k, v in node["values"].items()}
  if isinstance(node, dict) and set(node) == {"0", "1"}:  # plain tuple (hidden, cell)
    node = {"hidden": node["0"], "cell": node["1"]}
  if not (isinstance(node, dict) and {"hidden", "cell"} <= set(node)):
    raise _error(path, f"lstm_init_state has keys {sorted(node) if isinstance(node, dict) else node!r}, "
                 "expected 'hidden' and 'cell'.")
  return node["hidden"], node["cell"]


def _get(node: Any, keys: list[str], path: str) -> np.ndarray:
  for i, k in enumerate(keys):
    if not isinstance(node, dict) or k not in node:
      have = sorted(node) if isinstance(node, dict) else type(node).__name__
      raise _error(path, f"missing theta entry {'/'.join(keys[:i + 1])} (found {have}); this is "
                   "not a HyperV2/VeLO checkpoint (wrong architecture?).")
    node = node[k]
  if not isinstance(node, np.ndarray):
    raise _error(path, f"theta entry {'/'.join(keys)} is not an array.")
  if node.dtype != np.float32:
    raise _error(path, f"theta entry {'/'.join(keys)} has dtype {node.dtype}, expected float32.")
  return node


def _check_shape(a: np.ndarray, shape: tuple[int, ...], name: str, path: str) -> np.ndarray:
  if a.shape != shape:
    raise _error(path, f"theta entry {name} has shape {a.shape}, expected {shape} (from the "
                 "other entries); the file mixes architectures or is corrupt.")
  return a


def theta_from_haiku(hk: dict[str, Any], path: str = "<theta>") -> tuple[dict[str, int], dict[str, Any]]:
  """Maps a haiku HyperV2 theta (nested dicts of numpy) to (hparams, our theta).

  Sizes are inferred: H from ``lstm_init_state``, K and the MLP widths from
  ``ff_mod_stack``; every other shape is checked against them.
  """
  rnn = ["rnn_params"]
  if "lstm_init_state" not in hk:
    raise _error(path, f"missing theta entry lstm_init_state (found {sorted(hk)}); this is not "
                 "a HyperV2/VeLO checkpoint (wrong architecture?).")
  hidden, cell = (_get({"x": a}, ["x"], path) for a in _lstm_state(hk["lstm_init_state"], path))
  if hidden.ndim != 2 or hidden.shape[0] != 1:
    raise _error(path, f"lstm_init_state/hidden has shape {hidden.shape}, expected (1, H).")
  h = hidden.shape[1]
  _check_shape(cell, (1, h), "lstm_init_state/cell", path)
  mods = _get_dict(hk, ["ff_mod_stack", "~"], path)
  n_layers = 1 + sum(1 for k in mods if re.fullmatch(r"w[1-9][0-9]*", k))
  b0 = _get(hk, ["ff_mod_stack", "~", "b0"], path)
  if b0.ndim != 2:
    raise _error(path, f"ff_mod_stack/~/b0 has shape {b0.shape}, expected (K, ff_hidden_size).")
  k, ff = b0.shape
  blocks = [k_ for k_ in mods if k_.startswith("w0__")]
  if len(blocks) != len(hyper_v2.INPUT_GROUP_WIDTHS):
    raise _error(path, f"ff_mod_stack has {len(blocks)} first-layer blocks w0__*, expected "
                 f"{len(hyper_v2.INPUT_GROUP_WIDTHS)} (HyperV2 with VeLO's feature flags).")
  w0 = np.concatenate([
      _check_shape(_get(hk, ["ff_mod_stack", "~", f"w0__{i}"], path), (k, width, ff),
                   f"ff_mod_stack/~/w0__{i}", path)
      for i, width in enumerate(hyper_v2.INPUT_GROUP_WIDTHS)], axis=1)
  mlp = {"w0": w0, "b0": b0}
  for i in range(1, n_layers):
    out = 3 if i == n_layers - 1 else ff
    mlp[f"w{i}"] = _check_shape(_get(hk, ["ff_mod_stack", "~", f"w{i}"], path), (k, ff, out),
                                f"ff_mod_stack/~/w{i}", path)
    mlp[f"b{i}"] = _check_shape(_get(hk, ["ff_mod_stack", "~", f"b{i}"], path), (k, out),
                                f"ff_mod_stack/~/b{i}", path)

  def linear(name: str, n_in: int, n_out: int) -> dict[str, np.ndarray]:
    return {"w": _check_shape(_get(hk, rnn + [name, "w"], path), (n_in, n_out), f"rnn_params/{name}/w", path),
            "b": _check_shape(_get(hk, rnn + [name, "b"], path), (n_out,), f"rnn_params/{name}/b", path)}

  f = hyper_v2.NUM_LSTM_INPUTS
  linear("linear", f, h)  # validated only: HyperV2 overwrites this layer's output.
  step = linear("step_size", h, 1)
  theta = {
      "lstm_init": {"hidden": hidden[0], "cell": cell[0]},
      "mix": linear("linear_1", f, h),
      "lstm_in": linear("linear_2", f, h),
      "lstm": linear("rnn/linear", 2 * h, 4 * h),  # input: [mixed x (H), hidden (H)]
      "to_controls": linear("rnn_to_controls", h, k),
      "step_size": {"w": step["w"][:, 0], "b": step["b"][0]},
      "mlp": mlp,
  }
  hparams = {"lstm_hidden_size": h, "param_inits": k, "ff_hidden_size": ff,
             "ff_hidden_layers": n_layers - 1}
  return hparams, theta


def _get_dict(node: Any, keys: list[str], path: str) -> dict[str, Any]:
  for i, k in enumerate(keys):
    if not isinstance(node, dict) or k not in node:
      raise _error(path, f"missing theta entry {'/'.join(keys[:i + 1])}; this is not a "
                   "HyperV2/VeLO checkpoint (wrong architecture?).")
    node = node[k]
  if not isinstance(node, dict):
    raise _error(path, f"theta entry {'/'.join(keys)} is not a map.")
  return node


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[hyper_v2.Velo, dict[str, Any]]:
  """Loads a learned_optimization HyperV2/VeLO ``params`` file.

  Args:
    path: the checkpoint file (learned_optimization's msgpack ``ParameterCheckpoint``).

  Returns:
    ``(arch, theta)``: the ``velo`` architecture with sizes read from the file,
    and its meta-parameters as float32 ``jax.Array`` leaves.

  Raises:
    LearnedOptimizerError: naming the problem for a missing, non-checkpoint,
      truncated, corrupt or wrong-architecture file.

  Examples:
    >>> arch, theta = load_checkpoint("params")  # doctest: +SKIP
    >>> tx = arch.as_optax(theta, num_steps=1000)  # doctest: +SKIP
  """
  path = os.fspath(path)
  hk = _unwrap_checkpoint(read_msgpack_tree(path), path)
  if not isinstance(hk, dict):
    raise _error(path, "theta is not a map.")
  hparams, theta = theta_from_haiku(hk, path)
  theta = {k: {kk: jnp.asarray(vv) for kk, vv in v.items()} for k, v in theta.items()}
  return hyper_v2.Velo(**hparams), theta
