"""A workaround for an XLA:CPU hang, applied by this project's entry points.

With jaxlib 0.10.2, XLA:CPU's concurrency-optimised scheduler can leave a
program waiting forever: every thread idle on a futex, no CPU used, the result
never ready. We hit it in ``meta_train``'s PES init of 8 vmapped flax LSTM
language-model tasks (its four orthogonal inits run LAPACK QR custom calls
concurrently); 4 slots, or the same program with the scheduler off, finish in
seconds. ``python -m meta_train``, ``scripts/*.py`` and the tests call
:func:`apply` before JAX starts its backend. Call it first in your own program
if it meta-trains on CPU, or set the flag in ``XLA_FLAGS`` yourself.
"""

from __future__ import annotations

import os

FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler=false"


def apply() -> None:
  """Adds ``FLAG`` to ``XLA_FLAGS`` unless the user already set that option.

  Only effective before JAX initialises its CPU backend (the first device use).
  """
  flags = os.environ.get("XLA_FLAGS", "")
  if "xla_cpu_enable_concurrency_optimized_scheduler" not in flags:
    os.environ["XLA_FLAGS"] = (flags + " " + FLAG).strip()
