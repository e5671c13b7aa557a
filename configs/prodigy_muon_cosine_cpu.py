"""prodigy_muon_cosine_cpu: an `mlp` rule learned as a residual on Prodigy+Muon with a cosine decay.

Command:  python -m meta_train --config configs/prodigy_muon_cosine_cpu.py --workdir runs/prodigy_muon_cosine
Hardware: 2 CPU cores. Runtime: docs/pretrained.md has the measured wall time
(about 1.1-1.3 s per outer step once compiled); it checkpoints every 250
outer steps, and the same command resumes a killed or SIGTERM'd run.
What it does: configs/prodigy_cosine_cpu.py (the recipe of
mlp-prodigy-cosine-cpu-v3: NRES with sign shaping, 4 pairs, truncation 25,
horizons 100-2,000, 8 groups reparameterised per tensor, outer LR 5e-5,
selection on 12 validation tasks by the floored log ratio, cosine decay from
out_init=0) with one change:
- `step_scale="prodigy_muon"`: on every matrix the direction is Muon's
  orthogonalised Prodigy momentum (Prodigy's own direction on vectors), scaled
  by Prodigy's d and the cosine decay. Untrained it is that hand-designed
  LR-free rule (row 6z of docs/pretrained.md's ablation table), the best
  untrained rule measured here; meta-training learns a residual on it.
This config makes the shipped `mlp-prodigy-muon-cosine-cpu-v4` (run G, its
export/best; 1,500 outer steps, 1,200,000 inner steps, about 48 wall minutes
beside scoring jobs).
Expected result (measured, docs/pretrained.md): export/best at step 1,500
(the 12-task validation score improved at every evaluation: floored mean
-0.029 at step 250 to -0.115 at 1,500, 11 of 12 wins at a median 1.93x
against tuned Adam); on `heldout` 5 of 6 wins at 3.20x at 500 steps and 5 of
6 at 2.46x at 2,000 (the 128-d quadratic is lost).
The same run is `configs/prodigy_cosine_cpu.py
--config.arch_hparams.step_scale=prodigy_muon` (how run G was started).
`:tiny` runs a seconds-long version for tests.
"""

from meta_train import config as config_lib


def get_config(arg=None):
  c = config_lib.load_beside(__file__, "prodigy_cosine_cpu", arg)
  c.arch_hparams.step_scale = "prodigy_muon"
  return c
