"""Test configuration: CPU only, 4 faked devices, strict numerics (as equinox does)."""

import os

# Must happen before JAX initialises its backends.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

# Runtime shape/dtype checks of the jaxtyping annotations, as equinox's tests do.
# Installed before anything imports learned_opt.
from jaxtyping import install_import_hook  # noqa: E402

install_import_hook(["learned_opt.flat", "learned_opt.features"], "beartype.beartype")

from learned_opt import xla_cpu  # noqa: E402  (after the hook: this imports learned_opt)

xla_cpu.apply()  # the XLA:CPU hang workaround, before the backend starts

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_num_cpu_devices", 4)
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")


@pytest.fixture
def key():
  return jax.random.key(0)
