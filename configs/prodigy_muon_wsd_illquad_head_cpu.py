"""prodigy_muon_wsd_illquad_head_cpu: run L's recipe with the MLP's output layer at 30x the outer LR.

Command:  python -m meta_train --config configs/prodigy_muon_wsd_illquad_head_cpu.py --workdir runs/prodigy_muon_wsd_illquad_head
Hardware: 2 CPU cores. Runtime: as configs/prodigy_muon_wsd_illquad_ctrl_cpu.py
(about 1.3-1.7 s per outer step with validation), here 500 outer steps, ~17 wall
minutes; it checkpoints every 250 outer steps, and the same command resumes a
killed or SIGTERM'd run (`--config.outer_steps` may change on resume).
What it does: configs/prodigy_muon_wsd_illquad_ctrl_cpu.py (run L, the shipped
`mlp-prodigy-muon-wsd-illquad-ctrl-cpu-v7`) with two changes:
- `outer_lr_mults` adds `mlp/w1=30,mlp/b1=30`: the per-element MLP's output
  layer (its learned direction on matrices and its log-magnitude everywhere)
  gets the controller's 1.5e-3. One multiplier on every vector is wrong for
  some task (runs M and N, docs/pretrained.md, ninth round); the magnitude head
  sees each element's features and could tell a bias from a quadratic's
  coordinate, but at 5e-5 its output layer moves a step by a few percent.
- `outer_steps=500`: run L peaked at step 500 and drifted after it.
Expected result: see docs/pretrained.md, ninth round.
`:tiny` runs a seconds-long version for tests.
"""

from meta_train import config as config_lib


def get_config(arg=None):
  c = config_lib.load_beside(__file__, "prodigy_muon_wsd_illquad_ctrl_cpu", arg)
  c.outer_lr_mults = "schedule_w=30,log_lr=30,mlp/w1=30,mlp/b1=30"
  if arg != "tiny":
    c.outer_steps = 500
  return c
