"""prodigy_muon_wsd_illquad_vec_cpu: run L's recipe with a learned step for non-matrix tensors.

Command:  python -m meta_train --config configs/prodigy_muon_wsd_illquad_vec_cpu.py --workdir runs/prodigy_muon_wsd_illquad_vec
Hardware: 2 CPU cores. Runtime: as configs/prodigy_muon_wsd_illquad_ctrl_cpu.py
(about 1.7 s per outer step with validation), here 1,000 outer steps, ~30 wall
minutes; it checkpoints every 250 outer steps, and the same command resumes a
killed or SIGTERM'd run (`--config.outer_steps` may change on resume).
What it does: configs/prodigy_muon_wsd_illquad_ctrl_cpu.py (run L, the shipped
`mlp-prodigy-muon-wsd-illquad-ctrl-cpu-v7`) with three changes:
- `arch_hparams.vector_step=True`: a learned multiplier `exp(vector_log_lr)`,
  1 at init, on every tensor that is not a matrix. Muon's users give those
  tensors their own Adam LR; here Prodigy's one `d` served both, and on the
  quadratics built for the diagnosis (none in any suite) v7 with a 2x step on
  vectors only reaches a 2.5x lower mean log ratio to tuned Adam than as shipped
  (docs/pretrained.md, ninth round), while a global 2x is what meta-training
  declined (v7's `log_lr` is -0.06).
- `outer_lr_mults` adds `vector_log_lr=30`, so it can move as far as the controller.
- `outer_steps=1000`: run L peaked at step 500 and drifted after it.
Expected result: see docs/pretrained.md, ninth round.
`:tiny` runs a seconds-long version for tests.
"""

from meta_train import config as config_lib


def get_config(arg=None):
  c = config_lib.load_beside(__file__, "prodigy_muon_wsd_illquad_ctrl_cpu", arg)
  c.arch_hparams.vector_step = True
  c.outer_lr_mults = "schedule_w=30,log_lr=30,vector_log_lr=30"
  if arg != "tiny":
    c.outer_steps = 1000
  return c
