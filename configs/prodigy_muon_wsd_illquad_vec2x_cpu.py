"""prodigy_muon_wsd_illquad_vec2x_cpu: run M's lever started at twice the step on vectors.

Command:  python -m meta_train --config configs/prodigy_muon_wsd_illquad_vec2x_cpu.py --workdir runs/prodigy_muon_wsd_illquad_vec2x
Hardware: 2 CPU cores. Runtime: as configs/prodigy_muon_wsd_illquad_vec_cpu.py
(1,000 outer steps, ~30 wall minutes); it checkpoints every 250 outer steps, and
the same command resumes a killed or SIGTERM'd run.
What it does: configs/prodigy_muon_wsd_illquad_vec_cpu.py (run M) with two changes:
- `arch_hparams.vector_step_init=log(2)`: the rule starts at twice the step on
  every non-matrix tensor. Run M, from 1x with a 30x outer LR on it, moved it to
  only e^0.14 = 1.15x, while v7 with a hand-set 2x on vectors did best on the
  7 diagnosis quadratics and won 17 of the 18 validation tasks (docs/pretrained.md,
  ninth round): the training tasks' signal for it is weak.
- `outer_lr_mults` drops `vector_log_lr`, so it stays near 2x (plain Adam at
  5e-5 moves it at most 0.05 in 1,000 steps) and the rest of the rule is
  meta-trained around it: a prior, as Prodigy's `estim_lr_coef` is one.
Expected result: see docs/pretrained.md, ninth round.
`:tiny` runs a seconds-long version for tests.
"""

import math

from meta_train import config as config_lib


def get_config(arg=None):
  c = config_lib.load_beside(__file__, "prodigy_muon_wsd_illquad_vec_cpu", arg)
  c.arch_hparams.vector_step_init = math.log(2.0)
  c.outer_lr_mults = "schedule_w=30,log_lr=30"
  return c
