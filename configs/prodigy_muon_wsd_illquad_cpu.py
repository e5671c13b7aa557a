"""prodigy_muon_wsd_illquad_cpu: v6's recipe plus a task group of ill-conditioned quadratics.

Command:  python -m meta_train --config configs/prodigy_muon_wsd_illquad_cpu.py --workdir runs/prodigy_muon_wsd_illquad
Hardware: 2 CPU cores. Runtime: as configs/prodigy_muon_wsd_matdir_cpu.py
(about 1.1-1.3 s per outer step once compiled, 1,500 outer steps, ~50 wall
minutes); it checkpoints every 250 outer steps, and the same command resumes a
killed or SIGTERM'd run.
What it does: configs/prodigy_muon_wsd_matdir_cpu.py (the recipe of the
shipped mlp-prodigy-muon-wsd-matdir-cpu-v6) with two changes:
- `extra_groups="quadratic_ill"`: a ninth task group, 32- or 64-d noisy
  quadratics with conditioning log-uniform in [1e2, 3e3] (the `quadratic_ill`
  family). The eight default groups hold one quadratic group, whose
  conditioning is drawn up to 1e3 (median ~30): nothing in training rewards a
  step larger than Prodigy's `d` on a task whose loss is still limited by the
  step's size. Untrained Prodigy with WSD and a fixed 2x `d` beats tuned Adam on
  2 of 3 such quadratics built for the diagnosis (none in any suite), with 1x on
  none (docs/pretrained.md, eighth round); a fixed 2x loses elsewhere, so the
  rule has to learn when.
- `eval_suites="val_ood"`: the 6 out-of-distribution validation tasks join
  the 12 drawn ones in choosing export/best (the selection fix of the seventh
  round); `heldout` stays unused for selection.
Expected result (measured, run K, docs/pretrained.md, eighth round): export/best
at step 1,500, 18-task validation -0.144 / 16 of 18 wins / 1.72x; on `heldout`
(3 seeds) 0.833 at 2.07x at 500 steps, 0.889 at 3.25x at 2,000. It does not ship
(the rule written before its scores: v6 and v5 have better floored means).
`:tiny` runs a seconds-long version for tests.
"""

from meta_train import config as config_lib


def get_config(arg=None):
  c = config_lib.load_beside(__file__, "prodigy_muon_wsd_matdir_cpu", arg)
  c.extra_groups = "quadratic_ill"
  if arg != "tiny":
    c.eval_suites = "val_ood"
  return c
