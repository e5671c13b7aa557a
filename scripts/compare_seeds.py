"""Compare meta-training recipes over seeds: each seed's export/best, their mean, and the verdict.

Command:
  python scripts/compare_seeds.py --max_step 750 \
    --recipe L=runs/prodigy_muon_wsd_illquad_ctrl,runs/prodigy_muon_wsd_illquad_ctrl_s1e0,runs/prodigy_muon_wsd_illquad_ctrl_s2e0 \
    --recipe P=runs/prodigy_muon_wsd_illquad_timectrl,runs/prodigy_muon_wsd_illquad_timectrl_seed1,runs/prodigy_muon_wsd_illquad_timectrl_seed2

Each workdir is one seed of a recipe. A seed's score is the lowest value of the
run's own selection key (`config.eval_select`) among its evaluations at or before
`--max_step` (its export/best had it stopped there), read from metrics.jsonl; the
runs must have validated on the same tasks (`config.eval_seed`, docs/meta_train.md),
or the script says which field differs. Every recipe after the first is compared
with the first: mean difference, its standard error, and whether it exceeds twice
that (meta_train/seeds.py). Reads files only; runs nothing.
"""

import argparse
import math

from meta_train import seeds


def parse_recipe(text: str) -> tuple[str, list[str]]:
  name, sep, dirs = text.partition("=")
  workdirs = [d for d in dirs.split(",") if d]
  if not sep or not name or not workdirs:
    raise SystemExit(f"--recipe {text!r}: write NAME=WORKDIR[,WORKDIR...].")
  return name, workdirs


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--recipe", action="append", required=True, help="NAME=WORKDIR,WORKDIR,...")
  p.add_argument("--max_step", type=int, default=10 ** 9, help="the common outer-step budget")
  args = p.parse_args()
  recipes = dict(map(parse_recipe, args.recipe))
  scored, validations = {}, {}
  try:
    for name, dirs in recipes.items():
      scored[name] = []
      for d in dirs:
        s, validations[d] = seeds.run_score(d, args.max_step)
        scored[name].append(s)
    seeds.check_comparable(validations)
  except ValueError as e:
    raise SystemExit(f"error: {e}") from None
  key = next(iter(validations.values()))["eval_select"]
  print(f"selection key {key} (lower is better), budget {args.max_step} outer steps")
  for name, rows in scored.items():
    for s in rows:
      print(f"  {name} seed {s.seed}: step {s.step}, {key} {s.score:+.3f}, "
            f"win rate {s.win_rate:.3f}  ({s.workdir})")
    mean, sd = seeds.mean_sd([s.score for s in rows])
    print(f"  {name}: mean {mean:+.3f}, sd {sd:.3f} over {len(rows)} seed(s)")
  (base, base_rows), *others = scored.items()
  for name, rows in others:
    c = seeds.compare([s.score for s in base_rows], [s.score for s in rows])
    se = "unknown (one seed)" if math.isinf(c.stderr) else f"{c.stderr:.3f}"
    verdict = ("resolved: " + (f"{name} better" if c.diff < 0 else f"{base} better")
               if c.resolved else "not resolved")
    print(f"{name} - {base}: {c.diff:+.3f}, standard error {se}: {verdict}")


if __name__ == "__main__":
  main()
