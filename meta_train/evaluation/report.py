"""The report: metrics per run, aggregates with CIs, markdown tables and PNG plots.

Everything here is a pure function of ``results.json`` (plus matplotlib for the
plots), so a report can be rebuilt from the raw results at any time.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from meta_train.evaluation import metrics

REFERENCE = "adam_tuned"

DEFINITIONS = """\
- **final loss**: the last point of the training curve, i.e. the mean minibatch training loss
  over the last window of `steps / num_points` steps; NaN/inf count as +inf (diverged).
  *Normalised* losses divide by the task's trivial-predictor loss (`task.normalizer`, clipped
  at 10), so they can be pooled across tasks.
- **tuned Adam**: Adam at the best of 14 log-spaced constant LRs in [1e-4, 1], picked per task
  and seed on the final training loss (VeLO's baseline).
- **steps to reach tuned Adam**: the first window end at which the method's training curve is
  at or below tuned Adam's final loss (`-` if never).
- **speedup** (VeLO): the steps tuned Adam needs to reach the method's final loss, divided by
  the method's steps, read off tuned Adam's run continued to `cap x steps`; capped at
  `cap` (when Adam never gets there). Resolution: one window. > 1 is faster than tuned Adam.
- **win rate**: the fraction of (task, seed) pairs where the method's final training loss is
  below tuned Adam's (ties count 1/2).
- **median / IQM** (interquartile mean, rliable) over all (task, seed) pairs, with 95%
  bootstrap CIs from 2,000 two-level resamples (tasks with replacement, then seeds within).
- **compute**: training steps and seconds (compile + run) of every run, tuning included (the
  14-run LR grid, the range test's ramp); tuned Adam's continuation for speedups is
  measurement, counted separately.
"""


def _rows(results: dict[str, Any]) -> list[dict[str, Any]]:
  """One row of metrics per (task, method, seed) run in the plan."""
  plan, runs = results["plan"], results["runs"]
  cap = results["setting"]["speedup_cap"]
  n = results["setting"]["num_steps"]
  rows = []
  for tid in plan["tasks"]:
    for seed in plan["seeds"]:
      ref = runs.get(f"{tid}|{REFERENCE}|{seed}")
      if ref is None:
        continue
      for m in plan["methods"]:
        r = runs.get(f"{tid}|{m}|{seed}")
        if r is None:
          continue
        cmp = metrics.against_reference(r["train"], r["train_steps"], ref, n, cap)
        rows.append({
            "task": tid, "method": m, "seed": seed, "final": cmp["final"],
            "eval": metrics.final_loss(r["eval"]),
            "norm_final": r["extra"]["norm_final_train"],
            "norm_eval": r["extra"]["norm_final_eval"],
            "speedup": cmp["speedup"], "win": cmp["win"], "log_ratio": cmp["log_ratio"],
            "steps_to_adam": cmp["steps_to_adam"],
            # Wall clock to the same point: steps times this method's run time per step.
            "seconds_to_adam": (None if cmp["steps_to_adam"] is None
                                else cmp["steps_to_adam"] * seconds_per_step(r)),
            "steps": r["steps"], "seconds": r["compile_s"] + r["run_s"],
            "compile_s": r["compile_s"], "run_s": r["run_s"], "extra": r["extra"]})
  return rows


def _by_task(rows: list[dict[str, Any]], method: str, key: str) -> dict[str, list[float]]:
  out: dict[str, list[float]] = {}
  for r in rows:
    if r["method"] == method:
      out.setdefault(r["task"], []).append(r[key])
  return out


def _ci(by_task: dict[str, list[float]], stat) -> str:
  if not by_task:
    return "-"
  p, lo, hi = metrics.bootstrap_ci(by_task, stat)
  return f"{p:.3g} [{lo:.3g}, {hi:.3g}]"


def summary(results: dict[str, Any]) -> list[dict[str, Any]]:
  """Per method: win rate, speedup median/IQM and final losses with CIs; compute."""
  rows = _rows(results)
  out = []
  for m in results["plan"]["methods"]:
    mine = [r for r in rows if r["method"] == m]
    if not mine:
      continue
    info = results["methods"][m]
    out.append({
        "method": m, "kind": info["kind"],
        "win_rate": _ci(_by_task(rows, m, "win"), lambda x: float(np.mean(x))),
        "speedup_median": _ci(_by_task(rows, m, "speedup"), metrics.median),
        "speedup_iqm": _ci(_by_task(rows, m, "speedup"), metrics.iqm),
        "norm_final_median": _ci(_by_task(rows, m, "norm_final"), metrics.median),
        "norm_eval_median": f"{metrics.median([r['norm_eval'] for r in mine]):.3g}",
        "budget": info.get("budget", "none (meta-training not counted)"),
        "steps": sum(r["steps"] for r in mine), "seconds": sum(r["seconds"] for r in mine),
        "runs": len(mine)})
  return out


def _table(header: list[str], body: list[list[Any]]) -> str:
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in body]
  return "\n".join(lines)


def _fmt(x: Any) -> str:
  if x is None:
    return "-"
  if isinstance(x, float):
    return f"{x:.4g}"
  return str(x)


def _per_task(results: dict[str, Any], rows: list[dict[str, Any]], key: str) -> str:
  tids = results["plan"]["tasks"]
  header = ["method"] + [results["tasks"][t]["name"] for t in tids if t in results["tasks"]]
  body = []
  for m in results["plan"]["methods"]:
    cells = []
    for t in tids:
      vals = [r[key] for r in rows if r["method"] == m and r["task"] == t]
      vals = [v for v in vals if v is not None]
      cells.append(_fmt(float(np.mean(vals))) if vals else "-")
    body.append([m] + cells)
  return _table(header, body)


def _ablations(results: dict[str, Any], rows: list[dict[str, Any]]) -> str:
  methods = results["methods"]
  ablated = [m for m in results["plan"]["methods"] if methods[m].get("ablation")]
  if not ablated:
    return "No ablations were run (pass `--ablations`)."
  full = {(r["task"], r["seed"], r["method"]): r["final"] for r in rows}
  body = []
  for m in ablated:
    of = methods[m]["of"]
    pairs = [(r["final"], full.get((r["task"], r["seed"], of))) for r in rows if r["method"] == m]
    pairs = [(a, b) for a, b in pairs if b is not None]
    ratio = [a / b if np.isfinite(a) and b > 0 else np.inf for a, b in pairs]
    worse = np.mean([a > 1.01 * b for a, b in pairs]) if pairs else float("nan")
    norm = metrics.median([r["norm_final"] for r in rows if r["method"] == m])
    norm_full = metrics.median([r["norm_final"] for r in rows if r["method"] == of])
    body.append([of, methods[m]["ablation"], f"{norm_full:.3g}", f"{norm:.3g}",
                 f"{metrics.median(ratio):.3g}", f"{worse:.2f}"])
  return _table(["optimizer", "ablation", "median norm. final (full)", "median norm. final "
                 "(ablated)", "median final ratio ablated/full", "fraction >1% worse"], body)


def _extras(results: dict[str, Any], rows: list[dict[str, Any]]) -> str:
  names = {t: results["tasks"][t]["name"] for t in results["plan"]["tasks"] if t in results["tasks"]}
  parts = []
  snap = [r for r in rows if r["method"] == "snapshot_ensemble"]
  if snap:
    body = []
    for t, name in names.items():
      rs = [r["extra"] for r in snap if r["task"] == t]
      if rs and "ensemble_nll" in rs[0]:
        mean = lambda k: f"{np.mean([e[k] for e in rs]):.4g}"
        body.append([name, mean("ensemble_nll"), mean("last_nll"), mean("ensemble_acc"),
                     mean("last_acc")])
      elif rs:
        body.append([name, "n/a", "n/a", "n/a", "n/a: " + rs[0].get("note", "")])
    parts.append("### Snapshot ensembles\n\nEval NLL and accuracy of the ensemble (mean of the "
                 "snapshots' predicted probabilities) against its last snapshot alone, mean over "
                 "seeds.\n\n" + _table(["task", "ensemble NLL", "last-snapshot NLL",
                                        "ensemble acc.", "last-snapshot acc."], body))
  fo = [r for r in rows if r["method"] == "freezeout"]
  if fo:
    body = []
    for t, name in names.items():
      rs = [r["extra"] for r in fo if r["task"] == t]
      if rs:
        body.append([name, ", ".join(rs[0]["groups"]),
                     ", ".join(f"{x:.2f}" for x in rs[0]["freeze_fractions"]),
                     f"{rs[0]['frozen_layer_step_fraction']:.2f}",
                     f"{np.mean([e['measured_step_time_saving'] for e in rs]):+.2f}"])
    parts.append("### FreezeOut step-time saving\n\nMeasured saving = 1 - (run time) / (segments "
                 "x the time of a segment with every layer trainable); frozen fraction = share "
                 "of layer-steps frozen.\n\n" + _table(
                     ["task", "layers (input first)", "freeze at", "frozen fraction",
                      "measured saving"], body))
  body = []
  for t, name in names.items():
    cell = lambda m: ", ".join(f"{r['extra']['lr']:.2g}" for r in rows
                               if r["method"] == m and r["task"] == t and "lr" in r["extra"])
    body.append([name, cell(REFERENCE), cell("adam_random_search"), cell("lr_range_test")])
  parts.append("### Learning rates picked (per seed)\n\n" + _table(
      ["task", "tuned Adam", "random search", "LR range test"], body))
  return "\n\n".join(parts)


def _repro(results: dict[str, Any], rows: list[dict[str, Any]]) -> str:
  inv = results["invocations"][-1]
  env = inv["environment"]
  s = results["setting"]
  runs = results["runs"]
  measure = sum(r["extra"].get("measurement_steps", 0) for k, r in runs.items()
                if k.split("|")[1] == REFERENCE)
  total_steps = sum(r["steps"] for r in rows)
  secs = sum(r["seconds"] for r in rows)
  comp = sum(r["compile_s"] for r in rows)
  wall = sum(i["wall_s"] for i in results["invocations"])
  lines = [
      f"- packages: python {env['python']}, jax {env['jax']}, jaxlib {env['jaxlib']}, optax "
      f"{env['optax']}, flax {env['flax']}, numpy {env['numpy']}, learned-opt "
      f"{env['learned_opt']}",
      f"- hardware: {env['cpu']}, {env['cpu_cores']} cores visible; JAX devices "
      f"{', '.join(env['devices'])}; {env['platform']}",
      f"- seeds: {results['plan']['seeds']} (seed s: init, data order and eval batches from "
      "`jax.random.key(s)`, shared by every method)",
      f"- setting: {s}",
      f"- total compute: {total_steps:,} training steps and {secs:,.0f} s "
      f"({comp:,.0f} s compiling) over {len(rows)} runs, tuning included; plus {measure:,} "
      f"steps of tuned-Adam continuation for speedups; {wall:,.0f} s wall time over "
      f"{len(results['invocations'])} invocation(s)",
      f"- command: `{_command(inv['config'])}`",
  ]
  return "\n".join(lines)


def _command(cfg: dict[str, Any]) -> str:
  parts = ["python scripts/evaluate.py"]
  parts += [f"--optimizer {o}" for o in cfg["optimizers"]]
  parts += [f"--tasks {cfg['tasks']}", f"--seeds {cfg['seeds']}", f"--out {cfg['out']}"]
  if cfg["steps"] is not None:
    parts.append(f"--steps {cfg['steps']}")
  parts.append(f"--baselines {','.join(cfg['baselines'])}")
  parts += [f"--{k.replace('_', '-')} {cfg[k]}" for k in (
      "num_points", "num_evals", "eval_batches", "speedup_cap", "snapshot_cycles")
            if cfg.get(k) is not None]  # None: the default, which is not a flag value
  if cfg["ablations"]:
    parts.append("--ablations")
  return " ".join(parts)


def markdown(results: dict[str, Any]) -> str:
  """The report as markdown."""
  rows = _rows(results)
  summ = summary(results)
  s = results["setting"]
  methods = results["methods"]
  head = ["method", "win rate vs tuned Adam", "speedup median", "speedup IQM",
          "norm. final train loss (median)", "norm. final eval (median)", "tuning budget",
          "steps", "seconds"]
  body = [[x["method"], x["win_rate"], x["speedup_median"], x["speedup_iqm"],
           x["norm_final_median"], x["norm_eval_median"], x["budget"], f"{x['steps']:,}",
           f"{x['seconds']:.0f}"] for x in summ]
  described = "\n".join(
      f"- `{m}` ({methods[m]['kind']}): {methods[m].get('summary') or methods[m].get('source')}"
      + (f"; ablation `{methods[m]['ablation']}`" if methods[m].get("ablation") else "")
      for m in results["plan"]["methods"])
  tasks_md = "\n".join(f"- `{t}`: {results['tasks'][t]['name']} `{results['tasks'][t]['spec']}`"
                       for t in results["plan"]["tasks"] if t in results["tasks"])
  return "\n\n".join([
      "# Evaluation report",
      f"{len(results['plan']['tasks'])} tasks x {len(results['plan']['methods'])} methods x "
      f"{len(results['plan']['seeds'])} seeds, {s['num_steps']} steps per run; speedup cap "
      f"{s['speedup_cap']}. Each value in brackets is a 95% bootstrap CI over tasks and seeds.",
      "## Summary\n\n" + _table(head, body),
      "![speedups](speedups.png)",
      "## Final training loss per task (mean over seeds)\n\n" + _per_task(results, rows, "final"),
      "## Final eval loss per task (mean over seeds)\n\n" + _per_task(results, rows, "eval"),
      "## Steps to reach tuned Adam's final loss (mean over seeds that reach it)\n\n"
      + _per_task(results, rows, "steps_to_adam"),
      "## Seconds to reach tuned Adam's final loss (mean over seeds that reach it)\n\n"
      "Steps to reach it times the method's run time per step on this machine (compile "
      "excluded): the wall-clock view, where a costlier step (K-FAC, Shampoo, LocoProp) pays "
      "for what it saves in steps.\n\n" + _per_task(results, rows, "seconds_to_adam"),
      "## Ablations of the learned optimizers' inputs\n\n" + _ablations(results, rows),
      "## Baseline details\n\n" + _extras(results, rows),
      "## Loss curves\n\n" + "\n".join(
          f"![{t}](curves_{t}.png)" for t in results["plan"]["tasks"] if t in results["tasks"]),
      "## Methods\n\n" + described,
      "## Tasks\n\n" + tasks_md,
      *_not_applicable(results),
      "## Metric definitions\n\n" + DEFINITIONS,
      "## Reproducibility\n\n" + _repro(results, rows),
  ]) + "\n"


def _not_applicable(results: dict[str, Any]) -> list[str]:
  """A section listing the (task, method) pairs a method cannot run on, and why; none if none."""
  skipped = results.get("not_applicable") or {}
  if not skipped:
    return []
  seen: dict[tuple[str, str], str] = {}
  for key, why in skipped.items():
    tid, method, _ = key.split("|")
    seen.setdefault((tid, method), why)
  lines = [f"- `{m}` on {results['tasks'].get(t, {}).get('name', t)}: {why}"
           for (t, m), why in sorted(seen.items(), key=lambda kv: (kv[0][1], kv[0][0]))]
  return ["## Not applicable\n\nThese methods cannot run on these tasks by design; their "
          "aggregates above cover only the tasks they ran on.\n\n" + "\n".join(lines)]


def seconds_per_step(run: dict[str, Any]) -> float:
  """Mean run time of one training step of a run (compile excluded), tuning runs included."""
  steps = run["steps"] + run["extra"].get("measurement_steps", 0)
  return run["run_s"] / max(steps, 1)


def plot(results: dict[str, Any], out: str) -> list[str]:
  """Writes ``curves_<task>.png`` (train and eval curves) and ``speedups.png``; returns paths."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  runs, plan = results["runs"], results["plan"]
  cmap = plt.get_cmap("tab20")
  colors = {m: cmap(i % 20) for i, m in enumerate(plan["methods"])}
  paths = []
  for tid in plan["tasks"]:
    if tid not in results["tasks"]:
      continue
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for m in plan["methods"]:
      rs = [runs[k] for k in (f"{tid}|{m}|{s}" for s in plan["seeds"]) if k in runs]
      if not rs:
        continue
      learned = results["methods"][m]["kind"] == "learned"
      style = dict(color=colors[m], lw=2.0 if learned else 1.0, ls="-" if learned else "--",
                   label=m)
      train = np.mean([r["train"] for r in rs], 0)
      axes[0].plot(rs[0]["train_steps"], train, **style)
      axes[1].plot(rs[0]["eval_steps"], np.mean([r["eval"] for r in rs], 0), **style)
      # Wall clock: what one run of the method costs per step here (LocoProp's and
      # K-FAC's case is made in seconds, not steps).
      per_step = float(np.mean([seconds_per_step(r) for r in rs]))
      axes[2].plot(np.asarray(rs[0]["train_steps"]) * per_step, train, **style)
    for ax, what, xlabel in zip(axes, ("train loss (window mean)", "eval loss",
                                       "train loss vs wall clock"),
                                ("step", "step", "seconds of one run (compile excluded)")):
      ax.set_yscale("log")
      ax.set_xlabel(xlabel)
      ax.set_title(f"{results['tasks'][tid]['name']}: {what}", fontsize=9)
    axes[2].set_xscale("log")
    axes[1].legend(fontsize=6, ncol=2, loc="upper right")
    fig.tight_layout()
    path = os.path.join(out, f"curves_{tid}.png")
    fig.savefig(path, dpi=70)
    plt.close(fig)
    paths.append(path)
  rows = _rows(results)
  methods = [m for m in plan["methods"] if m != REFERENCE]
  data = [[r["speedup"] for r in rows if r["method"] == m] for m in methods]
  fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(methods)), 4))
  ax.boxplot([d if d else [np.nan] for d in data], showfliers=False)
  for i, d in enumerate(data):
    ax.scatter(np.full(len(d), i + 1) + np.random.default_rng(i).uniform(-.15, .15, len(d)), d,
               s=8, color=colors[methods[i]], zorder=3)
  ax.set_xticks(range(1, len(methods) + 1), methods, rotation=60, ha="right", fontsize=7)
  ax.set_yscale("log")
  ax.axhline(1.0, color="gray", lw=0.8)
  ax.set_ylabel(f"speedup over tuned Adam (cap {results['setting']['speedup_cap']})")
  fig.tight_layout()
  path = os.path.join(out, "speedups.png")
  fig.savefig(path, dpi=70)
  plt.close(fig)
  return paths + [path]


def write(results: dict[str, Any], out: str) -> None:
  """Writes ``report.md`` and the plots into ``out``."""
  plot(results, out)
  with open(os.path.join(out, "report.md"), "w") as f:
    f.write(markdown(results))
