"""prodigy_residual_cpu: an `mlp` rule learned as a residual on Prodigy's update, by noise-reuse ES.

Command:  python -m meta_train --config configs/prodigy_residual_cpu.py --workdir runs/prodigy_residual_cpu
Hardware: 2 CPU cores. Runtime: ~1.5 s per outer step once compiled (the
adaptive_cpu recipe's tasks and estimator); docs/pretrained.md has the
measured wall time and where the run stood. It checkpoints every 250 outer
steps, and the same command resumes a killed or SIGTERM'd run.
What it does: adaptive_cpu's recipe (nres, 4 pairs, truncation 25, horizons
100-1000, 8 groups of the default distribution reparameterised per tensor in
[0.1, 10], validation on 6 tasks disjoint from training and from `heldout`)
with two changes, each an issue-12 lever:
- `step_scale="prodigy"` (learned_opt/step_scale.py): the step is Prodigy's
  own update plus the MLP's direction, times exp of its magnitude, so the
  untrained rule *is* optax.contrib.prodigy and meta-training starts from the
  LR-free baseline rather than below it; the learned schedule stays on;
- the outer LR of the reference recipes (3e-4) and VeLO's sign shaping of
  each antithetic difference, which the adaptive_cpu run found steadier.
Expected result: the untrained rule scores like Prodigy (docs/pretrained.md);
what meta-training adds is measured there, on validation and on `heldout`.
`:tiny` runs a seconds-long version for tests.
"""

import importlib.util
import pathlib


def _adaptive_cpu():
  path = pathlib.Path(__file__).with_name("adaptive_cpu.py")
  spec = importlib.util.spec_from_file_location("adaptive_cpu", path)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


def get_config(arg=None):
  c = _adaptive_cpu().get_config(arg)
  c.arch_hparams.step_scale = "prodigy"
  c.learning_rate = 3e-4
  c.nres.shaping = "sign"
  return c
