"""prodigy_muon_wsd_illquad_timectrl_cpu: run L's recipe with a step controller that reads time only.

Command:  python -m meta_train --config configs/prodigy_muon_wsd_illquad_timectrl_cpu.py --workdir runs/prodigy_muon_wsd_illquad_timectrl
Hardware: 2 CPU cores. Runtime: as configs/prodigy_muon_wsd_illquad_ctrl_cpu.py
(about 1.3-1.7 s per outer step with validation), here 750 outer steps, ~25 wall
minutes; it checkpoints every 250 outer steps, and the same command resumes a
killed or SIGTERM'd run (`--config.outer_steps` may change on resume).
What it does: configs/prodigy_muon_wsd_illquad_ctrl_cpu.py (run L, the shipped
`mlp-prodigy-muon-wsd-illquad-ctrl-cpu-v7`) with two changes:
- `arch_hparams.schedule_inputs="time"`: the learned global step multiplier
  reads the training fraction only, not the loss features. v7's loss-feature
  weights lower its step on ill-conditioned quadratics, whose loss falls fast
  against its own averages (zeroing them moves 7 quadratics in no suite from a
  mean log ratio of -0.106 to -0.175), while zeroing them after training costs
  the 18 validation tasks (floored -0.183 to -0.147); meta-training without them
  is the test of whether the rest of the rule makes that up.
- `outer_steps=750`: run L peaked at step 500 and drifted after it.
Expected result: see docs/pretrained.md, tenth round.
`:tiny` runs a seconds-long version for tests.
"""

from meta_train import config as config_lib


def get_config(arg=None):
  c = config_lib.load_beside(__file__, "prodigy_muon_wsd_illquad_ctrl_cpu", arg)
  c.arch_hparams.schedule_inputs = "time"
  if arg != "tiny":
    c.outer_steps = 750
  return c
