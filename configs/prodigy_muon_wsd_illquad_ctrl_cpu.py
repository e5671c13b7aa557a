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
This config makes the shipped `mlp-prodigy-muon-wsd-illquad-ctrl-cpu-v7` (run L,
its export/best, picked at step 500 of 1,500; 1,200,000 inner steps, 43 wall minutes).
Expected result (measured, docs/pretrained.md, eighth round): 18-task validation
at step 500 -0.183 / 16 of 18 wins / 2.37x, worse after it (step 1,500: -0.129 /
10 / 0.93); on `heldout` (3 seeds) 0.833 at a median 3.39x at 500 steps and
0.833 at 2.40x at 2,000.
`:tiny` runs a seconds-long version for tests.
"""

from meta_train import config as config_lib


def get_config(arg=None):
  c = config_lib.load_beside(__file__, "prodigy_muon_wsd_illquad_cpu", arg)
  c.outer_lr_mults = "schedule_w=30,log_lr=30"
  return c
