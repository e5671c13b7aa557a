"""A workaround for an XLA:CPU hang, applied by this project's entry points.

With jaxlib 0.10.2, XLA:CPU's concurrency-optimised scheduler can leave a
program waiting forever: every thread idle on a futex, no CPU used, the result
never ready. We hit it in ``meta_train``'s PES init of 8 vmapped flax LSTM
language-model tasks (its four orthogonal inits run LAPACK QR custom calls
concurrently); 4 slots, or the same program with the scheduler off, finish in
seconds. ``python -m meta_train``, ``scripts/*.py`` and the tests call
:func:`apply` before JAX starts its backend. Call it first in your own program
if it meta-trains on CPU, or set the flag in ``XLA_FLAGS`` yourself.

``apply(ftz=True)`` (what ``python -m meta_train`` uses) also flushes
subnormal floats to zero. Inner trainings that vanish or blow up produce
subnormals, which x86 handles ~100x slower: one vanilla-RNN task group of the
default distribution took 4-10 s per PES step without it and 0.9-3 s with it
(and up to 120 s in some phases of a real run). Meta-training does not need
numbers below 1e-38; evaluations and tests keep IEEE behaviour.
"""

from __future__ import annotations

import os

FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler=false"
FTZ_FLAG = "--xla_cpu_ftz=true"


def apply(*, ftz: bool = False) -> None:
  """Adds ``FLAG`` (and ``FTZ_FLAG`` if asked) to ``XLA_FLAGS``, unless already set there.

  Only effective before JAX initialises its CPU backend (the first device use).
  """
  for flag, wanted in ((FLAG, True), (FTZ_FLAG, ftz)):
    flags = os.environ.get("XLA_FLAGS", "")
    if wanted and flag.split("=")[0] not in flags:
      os.environ["XLA_FLAGS"] = (flags + " " + flag).strip()
