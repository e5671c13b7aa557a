"""The evaluation driver: every task x method x seed, resumable, then the report.

:func:`prepare` checks every input (optimizers, tasks, baselines, values) and
fails with a message naming the fix **before anything is compiled**.
:func:`evaluate` then runs what ``DIR/results.json`` does not hold yet (a run
is keyed by task id, method and seed, and the file is rewritten atomically
after every run, so an interrupted evaluation resumes where it stopped) and
writes the report (:mod:`report`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import subprocess
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

import learned_opt
import tasks
from meta_train.evaluation import baselines as baselines_lib
from meta_train.evaluation import optimizers as optimizers_lib
from meta_train.evaluation import report as report_lib
from meta_train.evaluation import runner, suites
from meta_train.evaluation.base import EvalError, NotApplicable, RunRecord, Setting

RESULTS_VERSION = 1
REFERENCE = "adam_tuned"  # every metric is relative to it, so it always runs


@dataclasses.dataclass(frozen=True)
class EvalConfig:
  """What to evaluate; the CLI's flags one to one (see scripts/evaluate.py)."""
  optimizers: tuple[str, ...]
  tasks: str
  out: str
  steps: int | None = None  # None: the suite's default horizon
  seeds: int = 3
  baselines: tuple[str, ...] = ("all",)
  ablations: bool = False
  num_points: int | None = None  # None: min(50, steps), one window per step for short runs
  num_evals: int = 10
  eval_batches: int = 4
  speedup_cap: int = 4
  snapshot_cycles: int = 4


@dataclasses.dataclass
class Method:
  name: str
  kind: str  # "baseline" or "learned"
  info: dict[str, Any]
  fn: Callable[[Any, int, Setting], RunRecord]


@dataclasses.dataclass
class Plan:
  setting: Setting
  seeds: list[int]
  tasks: list[tuple[str, str, Any]]  # (task id, family, spec)
  methods: list[Method]


def _baseline_names(names: tuple[str, ...]) -> list[str]:
  if tuple(names) in (("all",), ()):
    return baselines_lib.baselines(available_only=True)
  if tuple(names) == ("none",):
    names = ()
  for n in names:
    b = baselines_lib.get_baseline(n)
    if b.unavailable:
      raise EvalError(f"baseline {n!r} cannot run in this install: {b.unavailable} (or leave "
                      "it out of --baselines; 'all' skips it).")
  return [REFERENCE] + [n for n in dict.fromkeys(names) if n != REFERENCE]


def _theta_digest(theta: Any) -> str:
  h = hashlib.sha256()
  for x in jax.tree.leaves(theta):
    h.update(np.ascontiguousarray(np.asarray(x)).tobytes())
  return h.hexdigest()[:16]


def _learned_methods(spec: optimizers_lib.LearnedOptimizerSpec, ablations: bool) -> list[Method]:
  info = {"source": spec.source, "arch": spec.arch.name, "hparams": spec.arch.hparams(),
          "theta_sha256": _theta_digest(spec.theta)}
  variants = [None] + (list(optimizers_lib.ABLATIONS) if ablations else [])
  if not optimizers_lib.supports_momenta_ablation(spec) and "no_momenta" in variants:
    variants.remove("no_momenta")
  out = []
  for ab in variants:
    fn = lambda task, seed, setting, ab=ab: optimizers_lib.run_learned(
        spec.arch, spec.theta, task, seed, setting, ablation=ab)
    name = spec.label if ab is None else f"{spec.label}[{ab}]"
    out.append(Method(name, "learned", {**info, "ablation": ab, "of": spec.label}, fn))
  return out


DEFAULT_NUM_POINTS = 50


def _num_points(requested: int | None, steps: Any) -> Any:
  """``requested``, or the default curve resolution capped at one window per step (the
  finest curve there is), so a short run such as the tiny suite's works on default flags."""
  if requested is not None:
    return requested
  if isinstance(steps, int) and not isinstance(steps, bool) and steps >= 1:
    return min(DEFAULT_NUM_POINTS, steps)
  return DEFAULT_NUM_POINTS  # a bad steps value is reported by Setting.check


def _check_out(out: str) -> None:
  if not out:
    raise EvalError("--out is required: the directory for results.json, report.md and plots.")
  if os.path.exists(out) and not os.path.isdir(out):
    raise EvalError(f"--out {out!r} is an existing file, not a directory; pass a directory "
                    "(new or holding an earlier results.json to resume).")


def _build_tasks(task_list: list[tuple[str, Any]]) -> list[str]:
  """Builds every task once (a bad spec or missing data fails here); returns their ids."""
  ids = []
  for family, spec in task_list:
    try:
      tasks.get_family(family).build(spec)
    except tasks.TaskError as e:
      raise EvalError(f"task {family} ({tasks.spec_to_json(spec)}): {e}") from None
    ids.append(suites.task_id(family, spec))
  return ids


def prepare(cfg: EvalConfig) -> Plan:
  """Validates ``cfg`` and resolves it into a :class:`Plan`; raises :class:`EvalError`.

  Names come first (tasks, baselines, optimizers), then values, then the tasks are
  built: a misspelt name is reported as such even when a value is also off.
  """
  if isinstance(cfg.seeds, bool) or not isinstance(cfg.seeds, int) or cfg.seeds < 1:
    raise EvalError(f"--seeds must be an int >= 1, got {cfg.seeds!r}.")
  _check_out(cfg.out)
  try:
    task_list, default_steps = suites.resolve_tasks(cfg.tasks)
  except tasks.TaskError as e:
    raise EvalError(f"--tasks {cfg.tasks!r}: {e}") from None
  methods = []
  for name in _baseline_names(cfg.baselines):
    b = baselines_lib.get_baseline(name)
    methods.append(Method(name, "baseline", {"summary": b.summary, "budget": b.budget}, b.fn))
  for arg in cfg.optimizers:
    methods += _learned_methods(optimizers_lib.resolve(arg), cfg.ablations)
  names = [m.name for m in methods]
  dup = sorted({n for n in names if names.count(n) > 1})
  if dup:
    raise EvalError(f"method names {dup} appear twice; label optimizers with LABEL=PATH.")
  steps = cfg.steps if cfg.steps is not None else default_steps
  if steps is None:
    raise EvalError("--steps is required when --tasks names only families (suites carry a "
                    "default horizon).")
  setting = Setting(num_steps=steps, num_points=_num_points(cfg.num_points, steps),
                    num_evals=cfg.num_evals, eval_batches=cfg.eval_batches,
                    speedup_cap=cfg.speedup_cap, snapshot_cycles=cfg.snapshot_cycles).check()
  ids = _build_tasks(task_list)
  return Plan(setting, list(range(cfg.seeds)),
              [(i, f, s) for i, (f, s) in zip(ids, task_list)], methods)


def environment() -> dict[str, Any]:
  """Package versions, hardware and devices, for the reproducibility block."""
  import flax, optax  # pylint: disable=g-import-not-at-top,multiple-imports
  try:
    out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    cpu = next((l.split(":", 1)[1].strip() for l in out.splitlines()
                if l.startswith("Model name")), platform.processor())
  except (OSError, subprocess.SubprocessError):
    cpu = platform.processor()
  return {"python": platform.python_version(), "jax": jax.__version__,
          "jaxlib": jax.lib.__version__ if hasattr(jax.lib, "__version__") else jax.__version__,
          "optax": optax.__version__, "flax": flax.__version__, "numpy": np.__version__,
          "learned_opt": _version(), "cpu": cpu, "cpu_cores": os.cpu_count(),
          "devices": [str(d) for d in jax.devices()], "platform": platform.platform()}


def _version() -> str:
  try:
    from importlib.metadata import version  # pylint: disable=g-import-not-at-top
    return version("learned-opt")
  except Exception:  # pylint: disable=broad-except
    return "unknown"


_RESULTS_KEYS = {"setting": dict, "tasks": dict, "methods": dict, "runs": dict,
                 "invocations": list}


def _read_results(path: str) -> dict[str, Any]:
  """``path`` parsed, or an :class:`EvalError` saying what is wrong with it and what to do."""
  fix = (f"Move {path} away (or pass a new --out) to start afresh; runs it held are redone.")
  try:
    with open(path) as f:
      results = json.load(f)
  except json.JSONDecodeError as e:
    raise EvalError(f"{path} is not valid JSON ({e}); it is cut off or was edited by hand. "
                    + fix) from None
  except (OSError, UnicodeDecodeError) as e:
    raise EvalError(f"cannot read {path}: {e}. " + fix) from None
  if not isinstance(results, dict):
    raise EvalError(f"{path} holds a JSON {type(results).__name__}, not the results object "
                    "this program writes. " + fix)
  bad = sorted(k for k, t in _RESULTS_KEYS.items() if not isinstance(results.get(k), t))
  if bad:
    raise EvalError(f"{path} lacks (or has malformed) {bad}, so it was not written by this "
                    "program. " + fix)
  return results


def _same_method(old: dict[str, Any], new: dict[str, Any]) -> bool:
  """Whether stored method info ``old`` describes ``new``. A hyperparameter that ``old`` lacks
  counts as its default: one added to the architecture since those results were written
  (``mlp``'s ``vector_step``) does not make the same optimizer a different method."""
  if old.get("kind") != "learned" or not isinstance(old.get("hparams"), dict):
    return old == new
  defaults = learned_opt.get(new["arch"]).hparams() if new.get("arch") == old.get("arch") else {}
  filled = {k: old["hparams"].get(k, defaults.get(k)) for k in new.get("hparams", {})}
  return old | {"hparams": filled} == new and set(old["hparams"]) <= set(filled)


def _load(path: str, setting: Setting, plan: Plan) -> dict[str, Any]:
  if not os.path.exists(path):
    return {"version": RESULTS_VERSION, "setting": dataclasses.asdict(setting), "tasks": {},
            "methods": {}, "runs": {}, "invocations": []}
  results = _read_results(path)
  if results.get("setting") != dataclasses.asdict(setting):
    raise EvalError(f"{path} holds results for another setting {results.get('setting')}; "
                    f"this call has {dataclasses.asdict(setting)}. Use a new --out, or the "
                    "same --steps and run settings to resume.")
  for m in plan.methods:
    old = results["methods"].get(m.name)
    if old is not None and not _same_method(old, json.loads(json.dumps(m.info | {"kind": m.kind}))):
      raise EvalError(f"{path} holds results for a different method named {m.name!r} "
                      f"({old}); use a new --out or another LABEL=PATH.")
  return results


def _save(path: str, results: dict[str, Any]) -> None:
  tmp = f"{path}.tmp-{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(results, f, separators=(",", ":"))
  os.replace(tmp, path)


def run_key(task_id: str, method: str, seed: int) -> str:
  return f"{task_id}|{method}|{seed}"


def evaluate(cfg: EvalConfig, *, log: Callable[[str], None] = print) -> dict[str, Any]:
  """Runs the evaluation ``cfg`` describes (resuming) and writes results and report.

  Returns:
    The results dict (as written to ``cfg.out/results.json``).
  """
  plan = prepare(cfg)
  try:
    os.makedirs(cfg.out, exist_ok=True)
  except OSError as e:
    raise EvalError(f"cannot create --out {cfg.out!r}: {e}; pass a directory you can write.") \
        from None
  path = os.path.join(cfg.out, "results.json")
  results = _load(path, plan.setting, plan)
  env = environment()
  t_start = time.perf_counter()
  skipped = results.setdefault("not_applicable", {})
  todo = [(t, m, s) for t in plan.tasks for s in plan.seeds for m in plan.methods
          if run_key(t[0], m.name, s) not in results["runs"]
          and run_key(t[0], m.name, s) not in skipped]
  log(f"{len(todo)} runs to do, {len(results['runs'])} already in {path}")
  for m in plan.methods:
    results["methods"][m.name] = m.info | {"kind": m.kind}
  built: dict[str, Any] = {}
  for i, ((tid, family, spec), method, seed) in enumerate(todo):
    task = built.setdefault(tid, tasks.get_family(family).build(spec))
    results["tasks"][tid] = {"family": family, "name": task.name,
                             "spec": json.loads(tasks.spec_to_json(spec))["spec"]}
    t0 = time.perf_counter()
    try:
      rec = method.fn(task, seed, plan.setting)
    except NotApplicable as e:
      skipped[run_key(tid, method.name, seed)] = str(e)
      _save(path, results)
      log(f"[{i + 1}/{len(todo)}] {task.name} {method.name} seed {seed}: not applicable ({e})")
      continue
    rec.extra["norm_final_train"] = runner.normalized(task, rec.train[-1])
    rec.extra["norm_final_eval"] = runner.normalized(task, rec.eval[-1])
    results["runs"][run_key(tid, method.name, seed)] = rec.to_json()
    _save(path, results)
    log(f"[{i + 1}/{len(todo)}] {task.name} {method.name} seed {seed}: final train "
        f"{rec.train[-1]:.4g} eval {rec.eval[-1]:.4g} ({time.perf_counter() - t0:.1f} s, "
        f"compile {rec.compile_s:.1f} s)")
  results["invocations"].append({"environment": env, "runs": len(todo),
                                 "wall_s": time.perf_counter() - t_start,
                                 "config": dataclasses.asdict(cfg)})
  results["plan"] = {"tasks": [t[0] for t in plan.tasks], "methods": [m.name for m in plan.methods],
                     "seeds": plan.seeds}
  _save(path, results)
  report_lib.write(results, cfg.out)
  log(f"wrote {path} and {os.path.join(cfg.out, 'report.md')}")
  return results
