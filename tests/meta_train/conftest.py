"""meta_train test fixtures: one persistent JAX compilation cache for every CLI subprocess.

The job tests start the CLI several times with the same config (uninterrupted,
killed, resumed); sharing compilations through a per-session cache directory
makes every start after the first skip XLA compilation. The cached executable
is the same program, so bit-exact resume is still what is tested.
"""

import pytest

from tests.meta_train import helpers


@pytest.fixture(scope="session", autouse=True)
def _subprocess_compilation_cache(tmp_path_factory):
  helpers.SUBPROCESS_ENV.update(
      JAX_COMPILATION_CACHE_DIR=str(tmp_path_factory.mktemp("jax_cache")),
      JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
      JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
  yield
  helpers.SUBPROCESS_ENV.clear()
