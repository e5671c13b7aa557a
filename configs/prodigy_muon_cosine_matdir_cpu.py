"""prodigy_muon_cosine_matdir_cpu: v4's recipe with the learned direction on matrices only.

Command:  python -m meta_train --config configs/prodigy_muon_cosine_matdir_cpu.py --workdir runs/prodigy_muon_cosine_matdir
Hardware: 2 CPU cores. Runtime: as configs/prodigy_muon_cosine_cpu.py (about
1.1-1.3 s per outer step once compiled, 1,500 outer steps); it checkpoints
every 250 outer steps, and the same command resumes a killed or SIGTERM'd run.
What it does: configs/prodigy_muon_cosine_cpu.py (the recipe of the shipped
mlp-prodigy-muon-cosine-cpu-v4) with one change:
- `learn_direction="matrices"`: the MLP's additive direction acts on dense and
  conv kernels only; on vectors (biases, norms, a quadratic's one parameter)
  it learns only the step's size. v4 learned the direction everywhere, and on
  an ill-conditioned quadratic (one vector) that additive term is a drift that
  does not vanish at the minimum: it stalled at 35x tuned Adam's loss after
  2,000 steps. v4's own theta with the direction masked on vectors scores the
  same on the 6 recipe_val tasks (5 of 6, 2.62x vs 2.71x) and reaches 0.027
  on that quadratic against v4's 14.9 (docs/pretrained.md, sixth round).
This config makes the shipped `mlp-prodigy-muon-cosine-matdir-cpu-v5` (run I,
its export/best; 1,500 outer steps, 1,200,000 inner steps, 47 wall minutes).
Expected result (measured, docs/pretrained.md): export/best at step 1,500,
12-task validation -0.114 / 11 of 12 wins / 2.02x; on `heldout` 5 of 6 wins at
3.20x at 500 steps and 6 of 6 at 2.31x at 2,000.
`:tiny` runs a seconds-long version for tests.
"""

from meta_train import config as config_lib


def get_config(arg=None):
  c = config_lib.load_beside(__file__, "prodigy_muon_cosine_cpu", arg)
  c.arch_hparams.learn_direction = "matrices"
  return c
