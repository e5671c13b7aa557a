"""The front door (learned_opt.resolve / load_meta / load), the .lopt file I/O and the
feature version."""

import hashlib
import pathlib

import chex
import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

import learned_opt
from learned_opt import base, pretrained, serialization
from learned_opt.base import LearnedOptimizerError

DATA = pathlib.Path(__file__).parent.parent / "data"


@pytest.mark.parametrize("name", learned_opt.architectures())
def test_an_architecture_name_is_its_untrained_theta(name):
  arch, theta = learned_opt.resolve(name)
  assert arch == learned_opt.get(name)
  chex.assert_trees_all_equal(theta, arch.init_meta(jax.random.key(0)))


@pytest.mark.parametrize("name", pretrained.names())
def test_a_pretrained_name_resolves_through_every_entry_point(name):
  arch, theta = learned_opt.resolve(name)
  arch2, theta2 = learned_opt.load_meta(name)  # used to fail with "no such file"
  arch3, theta3 = pretrained.load_meta(name)
  assert arch == arch2 == arch3 and arch.name == pretrained.info(name)["arch"]
  chex.assert_trees_all_equal(theta, theta2, theta3)
  assert learned_opt.weights.kind(name) == "pretrained"


# Shipped before theta files recorded their feature version (their SHA-256 is pinned).
UNVERSIONED = ("mlp-demo-v0", "mlp-small-cpu-v1")


def test_shipped_weights_are_pinned_and_unversioned_files_still_load():
  """The two oldest files predate the feature_version field; newer ones record it."""
  assert set(UNVERSIONED) <= set(pretrained.names())
  for name in pretrained.names():
    path = pretrained._weights_dir() / pretrained.info(name)["file"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == pretrained.info(name)["sha256"]
    meta, _ = serialization.read(path)
    if name in UNVERSIONED:
      assert "feature_version" not in meta
    else:
      assert meta["feature_version"] == base.FEATURE_VERSION
    assert pretrained.info(name)["feature_version"] == base.FEATURE_VERSION
    pretrained.load_meta(name)


def test_files_and_velo_checkpoints_resolve_by_header(tmp_path):
  arch = learned_opt.get("adam_hparams", hidden_size=4)
  theta = arch.init_meta(jax.random.key(5))
  learned_opt.save(tmp_path / "mlp", arch, theta)  # a file named like an architecture
  got_arch, got_theta = learned_opt.resolve(tmp_path / "mlp")  # a Path is always a file
  assert got_arch == arch
  chex.assert_trees_all_equal(got_theta, theta)
  assert learned_opt.resolve(str(tmp_path / "mlp"))[0] == arch
  velo_arch, _ = learned_opt.resolve(DATA / "velo_tiny_params")
  assert velo_arch.name == "velo" and velo_arch.lstm_hidden_size == 4


def test_unknown_source_lists_what_is_accepted(tmp_path):
  with pytest.raises(LearnedOptimizerError) as e:
    learned_opt.resolve("no-such-optimizer")
  msg = str(e.value)
  for accepted in learned_opt.architectures() + pretrained.names():
    assert repr(accepted) in msg
  assert "an existing file written by learned_opt.save or a VeLO checkpoint" in msg
  with pytest.raises(LearnedOptimizerError, match="directory"):
    learned_opt.load_meta(str(tmp_path))
  with pytest.raises(LearnedOptimizerError, match="no such file"):
    learned_opt.load(tmp_path / "missing", num_steps=10)
  with pytest.raises(LearnedOptimizerError, match="must be a str or a path"):
    learned_opt.resolve(3)
  with pytest.raises(LearnedOptimizerError, match="num_steps"):
    learned_opt.load("mlp-demo-v0", num_steps=0)


def test_save_records_the_feature_version(tmp_path):
  arch = learned_opt.get("mlp", hidden_size=4)
  learned_opt.save(tmp_path / "t.lopt", arch, arch.init_meta(jax.random.key(0)))
  meta, arrays = serialization.read(tmp_path / "t.lopt")
  assert meta == {"arch": "mlp", "hparams": arch.hparams(),
                  "feature_version": learned_opt.FEATURE_VERSION}
  assert all(isinstance(a, np.ndarray) for a in arrays.values())


def test_a_file_of_another_feature_version_is_refused(tmp_path):
  arch = learned_opt.get("mlp", hidden_size=4)
  path = tmp_path / "t.lopt"
  learned_opt.save(path, arch, arch.init_meta(jax.random.key(0)))
  meta, arrays = serialization.read(path)
  serialization.write(path, {**meta, "feature_version": base.FEATURE_VERSION + 1}, arrays)
  fix = (f"meta-trained with feature version {base.FEATURE_VERSION + 1} but this learned-opt "
         f"computes version {base.FEATURE_VERSION}; install a learned-opt release with feature "
         f"version {base.FEATURE_VERSION + 1} or meta-train again")
  with pytest.raises(LearnedOptimizerError, match=fix):
    learned_opt.load_meta(path)
  with pytest.raises(LearnedOptimizerError, match="feature version"):
    learned_opt.load(path, num_steps=10)
  # A file without the field predates it, and counts as version 1.
  del meta["feature_version"]
  serialization.write(path, meta, arrays)
  assert learned_opt.load_meta(path)[0] == arch


def test_a_pretrained_entry_of_another_feature_version_is_refused(monkeypatch):
  name = pretrained.names()[0]
  info = {**pretrained._TABLE[name]["info"], "feature_version": base.FEATURE_VERSION + 1}
  monkeypatch.setitem(pretrained._TABLE[name], "info", info)
  with pytest.raises(LearnedOptimizerError, match="install a learned-opt release"):
    pretrained.load_meta(name)
  with pytest.raises(LearnedOptimizerError, match=f"pretrained optimizer {name!r}"):
    learned_opt.load(name, num_steps=10)


def test_file_io_round_trips_any_dtype_bit_exactly(tmp_path):
  arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3),
            "b": np.asarray([1.5, -2.0], ml_dtypes.bfloat16),
            "c": np.asarray(7, np.int32)}
  serialization.write(tmp_path / "sub" / "x.lopt", {"note": [1, 2]}, arrays)
  meta, got = serialization.read(tmp_path / "sub" / "x.lopt")
  assert meta == {"note": [1, 2]} and list(got) == ["a", "b", "c"]
  for k, a in arrays.items():
    assert got[k].dtype == a.dtype and got[k].tobytes() == a.tobytes()
  assert not list((tmp_path / "sub").glob("*.tmp-*"))  # the temporary file was renamed
  with pytest.raises(LearnedOptimizerError, match="written by serialization.write itself"):
    serialization.write(tmp_path / "y.lopt", {"checksum": "x"}, arrays)
  with pytest.raises(LearnedOptimizerError, match="velo.load_checkpoint"):
    serialization.read(DATA / "velo_tiny_params")


def test_restore_refuses_arrays_of_another_architecture():
  arch = learned_opt.get("mlp", hidden_size=4)
  other = learned_opt.get("mlp", hidden_size=5)
  arrays = {n: np.asarray(x) for n, x in
            learned_opt.theta_file.leaves_with_names(other.init_meta(jax.random.key(0)))}
  with pytest.raises(LearnedOptimizerError, match="expects"):
    learned_opt.theta_file.restore(arch, arrays, source="x")
  good = {n: np.asarray(x) for n, x in
          learned_opt.theta_file.leaves_with_names(arch.init_meta(jax.random.key(0)))}
  with pytest.raises(LearnedOptimizerError, match="unexpected leaves"):
    learned_opt.theta_file.restore(arch, {**good, "['extra']": np.zeros(1, np.float32)},
                                   source="x")
  theta = learned_opt.theta_file.restore(arch, good, source="x")
  assert all(isinstance(x, jax.Array) for x in jax.tree.leaves(theta))
  assert jnp.result_type(jax.tree.leaves(theta)[0]) == jnp.float32
