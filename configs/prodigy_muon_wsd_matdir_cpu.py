"""prodigy_muon_wsd_matdir_cpu: v5's recipe with a constant-then-linear decay (WSD) instead of cosine.

Command:  python -m meta_train --config configs/prodigy_muon_wsd_matdir_cpu.py --workdir runs/prodigy_muon_wsd_matdir
Hardware: 2 CPU cores. Runtime: as configs/prodigy_muon_cosine_matdir_cpu.py
(about 1.1-1.3 s per outer step once compiled, 1,500 outer steps); it
checkpoints every 250 outer steps, and the same command resumes a killed or
SIGTERM'd run.
What it does: configs/prodigy_muon_cosine_matdir_cpu.py (the recipe of the
shipped mlp-prodigy-muon-cosine-matdir-cpu-v5) with one change:
- `decay="wsd"`: the step (and the weight of each gradient in Prodigy's d
  estimate) stays at 1 until 80% of the run, then falls linearly to 0,
  instead of following a cosine. A cosine has halved the step by mid-run,
  while on a slow task (the 128-d quadratic of conditioning 1e4) the loss is
  still limited by the step's size; Prodigy's d itself settles by step ~50
  there. Untrained Prodigy reaches 50.2 on it at 500 steps with a cosine and
  13.5 with WSD, against tuned Adam's 4.58 (docs/pretrained.md, seventh round).
This config makes the shipped `mlp-prodigy-muon-wsd-matdir-cpu-v6` (run J,
its export/best; 1,500 outer steps, 1,200,000 inner steps, 47 wall minutes).
Expected result (measured, docs/pretrained.md): export/best at step 1,500,
12-task validation -0.140 / 12 of 12 wins / 2.11x; on `heldout` (3 seeds, 500
steps) a win rate of 0.778 at a median 1.63x, and 0.944 at 3.16x at 2,000
steps (3 seeds).
`:tiny` runs a seconds-long version for tests.
"""

from meta_train import config as config_lib


def get_config(arg=None):
  c = config_lib.load_beside(__file__, "prodigy_muon_cosine_matdir_cpu", arg)
  c.arch_hparams.decay = "wsd"
  return c
