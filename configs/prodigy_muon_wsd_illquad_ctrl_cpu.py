"""prodigy_muon_wsd_illquad_ctrl_cpu: run K's recipe with a 30x outer LR for the global step controller.

Command:  python -m meta_train --config configs/prodigy_muon_wsd_illquad_ctrl_cpu.py --workdir runs/prodigy_muon_wsd_illquad_ctrl
Hardware: 2 CPU cores. Runtime: as configs/prodigy_muon_wsd_illquad_cpu.py (about
1.6 s per outer step with validation, 1,500 outer steps, ~45 wall minutes); it
checkpoints every 250 outer steps, and the same command resumes a killed or
SIGTERM'd run (`--config.outer_steps` may change on resume).
What it does: configs/prodigy_muon_wsd_illquad_cpu.py with one change:
- `outer_lr_mults="schedule_w=30,log_lr=30"`: the learned global multiplier
  `exp(w . [time, loss features])` and the log step size get 30x the outer LR
  (1.5e-3 instead of 5e-5). Adam moves each theta coordinate by about the LR per
  step, so at 5e-5 over 1,500 steps these zero-initialised entries can move
  0.075 at most; in v6 and run K they moved 0.01-0.02, a step change of a few
  percent, while the quadratics want 2x (docs/pretrained.md, eighth round).
Expected result: not yet measured (run L, started 2026-12-07 14:15 UTC; the rule
for shipping it was written before any of its scores, docs/pretrained.md,
eighth round).
`:tiny` runs a seconds-long version for tests.
"""

from meta_train import config as config_lib


def get_config(arg=None):
  c = config_lib.load_beside(__file__, "prodigy_muon_wsd_illquad_cpu", arg)
  c.outer_lr_mults = "schedule_w=30,log_lr=30"
  return c
