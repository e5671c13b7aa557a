"""prodigy_muon_cpu: an `mlp` rule learned as a residual on Prodigy with Muon's direction.

Command:  python -m meta_train --config configs/prodigy_muon_cpu.py --workdir runs/prodigy_muon_cpu
Hardware: 2 CPU cores. Runtime: docs/pretrained.md has the measured wall time
(about 1.5 s per outer step once compiled); it checkpoints every 250 outer
steps, and the same command resumes a killed or SIGTERM'd run.
What it does: configs/prodigy_residual_cpu.py (adaptive_cpu's tasks and NRES,
outer LR 3e-4, sign shaping, validation on 6 tasks disjoint from training and
from `heldout`) with three changes, each an issue-12 lever measured in
docs/pretrained.md:
- `step_scale="prodigy_muon"` (learned_opt/step_scale.py): Prodigy's d times
  Muon's orthogonalised momentum on every matrix (Prodigy's direction on
  vectors), plus the MLP's residual; untrained it is that LR-free rule;
- `accumulate=8`: each update of theta averages the meta-gradients of all 8
  task groups (one outer step visits one group), so no update follows one
  family's noise;
- `eval_select="val_floored_log_ratio"`: export/best is picked by the mean
  log loss ratio with losses floored at 1% of each task's starting loss, so
  tasks trained to near-zero loss cannot dominate the choice.
Expected result: docs/pretrained.md (validation and `heldout` scores).
`:tiny` runs a seconds-long version for tests.
"""

import importlib.util
import pathlib


def _base():
  path = pathlib.Path(__file__).with_name("prodigy_residual_cpu.py")
  spec = importlib.util.spec_from_file_location("prodigy_residual_cpu", path)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


def get_config(arg=None):
  c = _base().get_config(arg)
  c.arch_hparams.step_scale = "prodigy_muon"
  c.accumulate = 8
  c.eval_select = "val_floored_log_ratio"
  if arg == "tiny":
    c.accumulate = 2  # :tiny runs 3 outer steps: one update
  else:
    c.outer_steps = 1500
  return c
