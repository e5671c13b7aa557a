"""Shared helpers for the meta_train tests."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp

from tests.meta_train import _quadratic

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Extra environment of every subprocess (conftest.py adds a shared compilation cache).
SUBPROCESS_ENV: dict[str, str] = {}


def subprocess_env() -> dict[str, str]:
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT, **SUBPROCESS_ENV)
  env.pop("XLA_FLAGS", None)  # one CPU device unless the child asks for more
  return env


def cli(workdir, *extra, config="tiny.py"):
  """The ``python -m meta_train`` command line for ``configs/<config>``."""
  return [sys.executable, "-m", "meta_train", "--config", os.path.join(ROOT, "configs", config),
          "--workdir", str(workdir), *extra]


def run_cli(workdir, *extra, timeout=180, config="tiny.py"):
  return subprocess.run(cli(workdir, *extra, config=config), env=subprocess_env(), cwd=ROOT,
                        capture_output=True, text=True, timeout=timeout)


def flat(tree):
  return jnp.concatenate([jnp.ravel(x) for x in jax.tree.leaves(tree)])


def quadratic_pool(key, *, num_slots, pool_size, dim=4, noise=0.1):
  """A [num_slots, pool_size] pool of quadratic tasks with shared dim."""
  keys = jax.random.split(key, num_slots * pool_size)
  tasks = [_quadratic.make(k, dim=dim, noise=noise) for k in keys]
  stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *tasks)
  return jax.tree.map(lambda x: x.reshape((num_slots, pool_size) + x.shape[1:]), stacked)


def load_config(name, arg=None):
  """``configs/NAME.py``'s ``get_config(arg)``, loaded the way the CLI loads it."""
  from meta_train import config as config_lib  # pylint: disable=g-import-not-at-top
  return config_lib.load_file(os.path.join(ROOT, "configs", f"{name}.py")
                              + (f":{arg}" if arg else ""))


def tiny_config(**overrides):
  """``configs/tiny.py`` with top-level fields overridden."""
  c = load_config("tiny")
  for k, v in overrides.items():
    c[k] = v
  return c


def multihost_config(port=0, process_id=-1, num_processes=0):
  """``tiny`` shrunk for the two-process test: 4 global slots, 2 outer steps, no eval."""
  c = load_config("tiny")
  c.outer_steps, c.num_slots, c.checkpoint_every, c.eval_every = 2, 4, 1, 0
  if port:
    c.distributed.coordinator_address = f"127.0.0.1:{port}"
    c.distributed.num_processes = num_processes or 2
    c.distributed.process_id = process_id
  return c


def load_arch(name, arg=None):
  """The learned-optimizer architecture that ``configs/NAME.py`` trains."""
  import learned_opt  # pylint: disable=g-import-not-at-top
  c = load_config(name, arg)
  return learned_opt.get(c.arch, **c.arch_hparams.to_dict())
