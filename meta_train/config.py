"""Run configs: defaults, validation before any compilation, and compatibility.

A config file ``configs/NAME.py`` returns ``get_config(arg)``: ``default()``
with its own values. ``config.estimator`` names a registered estimator
(``meta_train.estimators``); every registered estimator has a sub-dict of its
hyperparameters, generated from the fields of its hparams dataclass
(``config.pes.sigma``, ``config.es.horizon``), and only the selected one is
used. ``validate`` turns the ConfigDict into frozen estimator hyperparameters
and checks every field, naming the fix, before anything is compiled.

``RESUMABLE_CHANGES`` lists the fields a run may change when it is resumed in
the same workdir; the sub-dicts of the estimators it does not use may change
too (they do not touch its trajectory); any other difference is refused.
``upgrade`` reads the ``config.json`` of workdirs written before estimators had
sub-dicts (flat ``sigma``, ``truncation_length``, ``horizon``, ...).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import json
import math
import os
from typing import Any

import jax
import ml_collections

import learned_opt
import tasks
from meta_train import engine, estimators, evaluation
from meta_train.base import EstimatorError, HParams

# Fields that do not change the trajectory of theta, so a resumed run may differ in them.
RESUMABLE_CHANGES = frozenset({
    "outer_steps", "log_every", "checkpoint_every", "keep_checkpoints", "eval_every",
    "eval_num_tasks", "eval_num_steps", "final_table", "final_table_steps",
    "final_table_tasks", "progress", "distributed",
    # Removed when validation moved to tuned Adam; listed so old workdirs holding them resume.
    "eval_adam_lr", "adam_sweep",
})


class ConfigError(ValueError):
  """A bad config value; the message names the fix."""


def default() -> ml_collections.ConfigDict:
  """Every field a meta-training config has, with one-line reasons."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.outer_steps = 100  # outer iterations (meta-gradient updates of theta)
  # Learned optimizer: a registry name and its hparams.
  c.arch = "adam_hparams"
  c.arch_hparams = ml_collections.ConfigDict({"hidden_size": 16})
  # Warm start: a learned_opt.save file or a shipped name (learned_opt.pretrained.names());
  # its architecture must equal arch/arch_hparams. Empty: arch.init_meta.
  c.init_from = ""
  # Estimator: a meta_train.estimators name: "pes" (unbiased), "tes" (truncated ES,
  # biased), "es" (full unroll, VeLO). Its hyperparameters are in c.<name>, one
  # sub-dict per registered estimator (added at the end; fields as its hparams
  # dataclass in meta_train/base.py), e.g. c.pes.sigma, c.pes.truncation_length.
  c.estimator = "pes"
  # Tasks.
  c.task_distribution = "quadratic"  # a tasks.distributions() name
  c.task_family = ""  # if set, only this family (overrides task_distribution)
  c.num_groups = 1  # task groups (family + shapes) visited round-robin; one compile each
  c.extra_groups = ""  # comma-separated families, one more group each ("quadratic_ill")
  c.num_slots = 8  # tasks per meta-batch (global; divisible by the device count)
  c.pool_size = 4  # tasks each slot draws from at its resets
  # > 0: each training tensor divided by a random factor in [e^-x, e^x] (tasks.augment).
  c.augment_reparam = 0.0
  # Outer optimizer.
  c.learning_rate = 3e-3
  c.clip_norm = 1.0
  # > 0: decoupled decay of theta toward its step-0 value (AdamW's, centred on the init):
  # a coordinate settles within ~1/anchor_decay of it, in Adam's units.
  c.anchor_decay = 0.0
  c.accumulate = 1  # >1: average this many meta-gradients per update (optax.MultiSteps)
  c.outer_lr_mults = ""  # "schedule_w=30,log_lr=30": those theta entries' own outer LR x
  # Jobs.
  c.log_every = 1
  c.checkpoint_every = 50
  c.keep_checkpoints = 3
  _add_eval_fields(c)
  c.final_table = False  # print theta vs Adam (default LR, best swept LR) at the end
  c.final_table_tasks = 4
  c.final_table_steps = 200
  c.progress = True
  # Multi-host: empty/0/-1 mean "from the environment" (or a single process).
  # heartbeat_timeout_s: a process that dies without a SIGTERM is declared lost after
  # this long and the others exit with an error (jax.distributed's heartbeat).
  c.distributed = ml_collections.ConfigDict(
      {"coordinator_address": "", "num_processes": 0, "process_id": -1,
       "heartbeat_timeout_s": 100})
  for name in estimators.estimators():
    if name in c:
      raise _fail(f"estimator {name!r} has the name of a config field; register it under "
                  "another name.")
    c[name] = estimator_config(name)
  return c


def _add_eval_fields(c: ml_collections.ConfigDict) -> None:
  """The periodic validation that picks export/best (docs/meta_train.md)."""
  c.eval_every = 0  # 0: no periodic evaluation
  c.eval_num_tasks = 2
  c.eval_num_steps = 200
  c.eval_suites = ""  # committed suites ("val_ood") joining the drawn ones; never "heldout"
  # Key of the drawn validation tasks: -1 draws them from `seed`. Set it (to 0, say) when
  # re-seeding a recipe, so every seed is selected and compared on the same tasks.
  c.eval_seed = -1
  # The validation metric that picks export/best (lower is better): one of
  # meta_train.evaluation.SELECTABLE. Not resumable: export/best on disk was picked by it.
  c.eval_select = "val_log_ratio"


def validation_seed(c) -> int:
  """The key of the drawn validation tasks: ``eval_seed`` where set (>= 0), else ``seed``.
  ``c`` is a config or a saved config's dict."""
  return c["eval_seed"] if c["eval_seed"] >= 0 else c["seed"]


def estimator_config(name: str) -> ml_collections.ConfigDict:
  """The sub-dict of estimator ``name``: its hparams dataclass's fields at their defaults."""
  hp = estimators.get_estimator(name).hparams()
  return ml_collections.ConfigDict(
      {f.name: getattr(hp, f.name) for f in dataclasses.fields(hp)})


def _fail(msg: str) -> ConfigError:
  return ConfigError(msg)


def _check_finite(c: ml_collections.ConfigDict, prefix: str = "") -> None:
  """Refuses NaN and inf anywhere in the config: ``> 0`` checks let ``inf`` through, and an
  inf learning rate or sigma trains a NaN theta to the end and exports it."""
  for k, v in c.items():
    if isinstance(v, ml_collections.ConfigDict):
      _check_finite(v, f"{prefix}{k}.")
    elif isinstance(v, float) and not math.isfinite(v):
      raise _fail(f"config.{prefix}{k} must be a finite number, got {v!r}; pass a finite value "
                  f"with --config.{prefix}{k}=... .")
    elif isinstance(v, (list, tuple)) and any(isinstance(x, float) and not math.isfinite(x)
                                              for x in v):
      raise _fail(f"config.{prefix}{k} must hold finite numbers, got {list(v)!r}.")


def _int(c, name, lo=1):
  v = c[name]
  if isinstance(v, bool) or not isinstance(v, int) or v < lo:
    raise _fail(f"config.{name} must be an int >= {lo}, got {v!r}; "
                f"pass e.g. --config.{name}={max(lo, 1)}.")


def estimator_hparams(c: ml_collections.ConfigDict) -> HParams:
  """The frozen hyperparameters of ``c.estimator``, from ``c.<estimator>`` (raises ConfigError)."""
  name = c.estimator
  if name not in estimators.estimators():
    raise _fail(f"config.estimator must be one of {list(estimators.estimators())}, got "
                f"{name!r}; pass e.g. --config.estimator=pes (or --import the module that "
                "registers it).")
  cls = estimators.get_estimator(name).hparams
  sub = c.get(name)
  if not isinstance(sub, ml_collections.ConfigDict):
    raise _fail(f"config.{name} (the {name} estimator's hyperparameters) is missing; build the "
                f"config from config_lib.default() (which has one sub-dict per registered "
                f"estimator), or set c.{name} = config_lib.estimator_config({name!r}).")
  fields = estimators.hparams_fields(name)
  unknown = sorted(set(sub.keys()) - set(fields))
  if unknown:
    raise _fail(f"config.{name} has unknown fields {unknown}; {cls.__name__} has {list(fields)}.")
  try:
    return cls(**sub.to_dict())
  except EstimatorError as e:
    flag = f"--config.{name}.{e.field or '<field>'}=..."
    raise _fail(f"bad estimator setting: config.{name}: {e} Fix it with {flag} .") from e


REPORTING_SUITE = "heldout"  # reported on, never selected on


def _comma_names(field: str, spec, what: str, example: str) -> list[str]:
  """The entries of a comma-separated string field (``eval_suites``, ``extra_groups``,
  ``outer_lr_mults``; "" is none), in order; anything but a string is refused, naming it."""
  if not isinstance(spec, str):
    raise _fail(f"config.{field} must be a string of comma-separated {what}, got {spec!r}; "
                f"pass e.g. --config.{field}={example}, or '' for none.")
  return [n.strip() for n in spec.split(",") if n.strip()]


def _check_eval_suites(spec) -> None:
  for name in _comma_names("eval_suites", spec, "suite names", "val_ood"):
    if name == REPORTING_SUITE:
      raise _fail(f"config.eval_suites names {name!r}, the suite results are reported on; "
                  "selecting on it would bias every held-out number. Use a validation suite "
                  "such as 'val_ood'.")
    if name not in evaluation.suite_names():
      raise _fail(f"config.eval_suites names an unknown suite {name!r}; valid: "
                  f"{[n for n in evaluation.suite_names() if n != REPORTING_SUITE]}.")


def extra_group_families(spec: str) -> list[str]:
  """The family names in ``config.extra_groups``, in order."""
  return _comma_names("extra_groups", spec, "task families", "quadratic_ill")


def _check_extra_groups(spec) -> None:
  for name in extra_group_families(spec):
    if name not in tasks.families():
      raise _fail(f"config.extra_groups names an unknown task family {name!r}; valid: "
                  f"{tasks.families()}.")


def outer_lr_mults(spec: str) -> dict[str, float]:
  """``config.outer_lr_mults`` as ``{theta entry: multiplier}`` ("" is none).

  Examples:
    >>> outer_lr_mults("schedule_w=30, log_lr=10")
    {'schedule_w': 30.0, 'log_lr': 10.0}
  """
  out = {}
  for item in _comma_names("outer_lr_mults", spec, "NAME=MULT entries", "schedule_w=30"):
    name, sep, value = item.partition("=")
    try:
      mult = float(value) if sep else math.nan
    except ValueError:
      mult = math.nan
    if not name.strip() or not (math.isfinite(mult) and mult > 0):
      raise _fail(f"config.outer_lr_mults entry {item!r} is not NAME=MULT with a finite "
                  "MULT > 0; pass e.g. --config.outer_lr_mults=schedule_w=30,log_lr=30.")
    out[name.strip()] = mult
  return out


def _check_outer_lr_mults(spec, arch) -> None:
  mults = outer_lr_mults(spec)
  if not mults:  # nothing to check: no trace of init_meta at every start-up
    return
  # The key is made inside the trace: a concrete one would start JAX's backend, which
  # must wait for jax.distributed.initialize (validate runs before it).
  names = engine.entry_names(jax.eval_shape(lambda: arch.init_meta(jax.random.key(0))))
  for name in mults:
    if name not in names:
      raise _fail(f"config.outer_lr_mults names {name!r}, which is not an entry of the "
                  f"{type(arch).__name__} theta; valid: {names}.")


def validate(c: ml_collections.ConfigDict, *, devices: bool = True, check_init: bool = True):
  """Checks a config before anything compiles; returns ``(arch, hp)``.

  ``devices=False`` skips the one check that needs the device count (it would
  start JAX's backend, which must wait for ``jax.distributed.initialize``);
  run ``check_devices`` after it. ``check_init=False`` leaves ``init_from`` to
  the caller's own :func:`init_theta` (the job reads the file once, not twice).
  """
  _check_finite(c)
  for name in ("outer_steps", "num_groups", "num_slots", "pool_size", "log_every",
               "checkpoint_every", "keep_checkpoints", "accumulate", "eval_num_tasks",
               "eval_num_steps", "final_table_tasks", "final_table_steps"):
    _int(c, name)
  _int(c, "eval_every", lo=0)
  _int(c, "seed", lo=0)
  _int(c, "eval_seed", lo=-1)
  _check_distributed(c.distributed)
  if (isinstance(c.augment_reparam, bool) or not isinstance(c.augment_reparam, (int, float))
      or not 0 <= c.augment_reparam <= 10):
    raise _fail(f"config.augment_reparam must be a number in [0, 10] (a log-scale; 2.3 means "
                f"factors in [0.1, 10]), got {c.augment_reparam!r}; pass e.g. "
                "--config.augment_reparam=2.3, or 0 to turn it off.")
  for name in ("learning_rate", "clip_norm"):
    if not isinstance(c[name], (int, float)) or not c[name] > 0:
      raise _fail(f"config.{name} must be a number > 0, got {c[name]!r}.")
  if (isinstance(c.anchor_decay, bool) or not isinstance(c.anchor_decay, (int, float))
      or not c.anchor_decay >= 0):
    raise _fail(f"config.anchor_decay must be a number >= 0 (0 turns it off), got "
                f"{c.anchor_decay!r}.")
  _check_eval_suites(c.eval_suites)
  _check_extra_groups(c.extra_groups)
  if c.eval_select not in evaluation.SELECTABLE:
    raise _fail(f"config.eval_select {c.eval_select!r} is not a validation metric; valid: "
                f"{list(evaluation.SELECTABLE)}.")
  try:
    arch = learned_opt.get(c.arch, **c.arch_hparams.to_dict())
  except learned_opt.LearnedOptimizerError as e:
    raise _fail(f"bad learned optimizer: {e} Set --config.arch / --config.arch_hparams.") from e
  _check_outer_lr_mults(c.outer_lr_mults, arch)
  hp = estimator_hparams(c)
  if c.init_from and check_init:
    init_theta(c, arch)
  if c.task_family:
    if c.task_family not in tasks.families():
      raise _fail(f"config.task_family {c.task_family!r} is not registered; valid: "
                  f"{tasks.families()} (or '' to use config.task_distribution).")
  elif c.task_distribution not in tasks.distributions():
    raise _fail(f"config.task_distribution {c.task_distribution!r} is unknown; valid: "
                f"{tasks.distributions()}.")
  if devices:
    check_devices(c)
  return arch, hp


def _check_distributed(d: ml_collections.ConfigDict) -> None:
  if not isinstance(d.coordinator_address, str):
    raise _fail(f"config.distributed.coordinator_address must be a 'host:port' string, got "
                f"{d.coordinator_address!r}.")
  for name, lo, example in (("num_processes", 0, 2), ("process_id", -1, 0),
                            ("heartbeat_timeout_s", 1, 100)):
    v = d[name]
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
      raise _fail(f"config.distributed.{name} must be an int >= {lo}, got {v!r}; pass e.g. "
                  f"--config.distributed.{name}={example}.")


def init_theta(c: ml_collections.ConfigDict, arch):
  """The theta ``config.init_from`` names (through ``learned_opt.resolve``, the one front
  door for weights), checked against the config's architecture."""
  src = c.init_from
  try:
    learned_opt.weights.kind(src)
  except learned_opt.LearnedOptimizerError as e:
    raise _fail(f"config.init_from {src!r} is neither a file nor a shipped optimizer: {e} "
                "Pass a path written by learned_opt.save (e.g. runs/NAME/export/best), a "
                "shipped name, or '' for a fresh init.") from e
  try:
    saved_arch, theta = learned_opt.resolve(src)
  except learned_opt.LearnedOptimizerError as e:
    raise _fail(f"config.init_from {src!r} cannot be loaded: {e}") from e
  if saved_arch != arch:
    raise _fail(f"config.init_from {src!r} holds {saved_arch!r}, but the config asks for "
                f"{arch!r}; set --config.arch and --config.arch_hparams to match it.")
  return theta


def check_devices(c: ml_collections.ConfigDict) -> None:
  """``num_slots`` must split evenly over all devices of all processes."""
  n_dev = jax.device_count()
  if c.num_slots % n_dev:
    raise _fail(f"config.num_slots ({c.num_slots}) must be divisible by the number of devices "
                f"({n_dev}); pass --config.num_slots={n_dev * max(1, c.num_slots // n_dev)}.")


# The flat estimator fields of configs written before estimators had sub-dicts,
# and the ones each estimator read (it ignored the others). Frozen: it describes
# the old format, not the current hyperparameters.
_FLAT_FIELDS = {
    "es": ("sigma", "num_pairs", "horizon", "shaping", "meta_loss", "num_eval_batches", "noise"),
    "pes": ("sigma", "num_pairs", "noise", "truncation_length", "min_horizon", "max_horizon"),
    "tes": ("sigma", "num_pairs", "noise", "truncation_length", "min_horizon", "max_horizon"),
}
_ALL_FLAT = frozenset(f for fields in _FLAT_FIELDS.values() for f in fields)


def upgrade(saved: dict) -> dict:
  """A saved config (a workdir's config.json) in the current layout.

  Moves the old flat estimator fields (``sigma``, ``truncation_length``,
  ``horizon``, ...) into the sub-dict of the saved estimator and drops those it
  did not read. A current-layout config comes back unchanged. Pure.

  Examples:
    >>> upgrade({"estimator": "es", "sigma": 0.1, "horizon": 5, "min_horizon": 9, "seed": 0})
    {'estimator': 'es', 'seed': 0, 'es': {'sigma': 0.1, 'horizon': 5}}
  """
  # A dict is a sub-dict (an estimator may be named like an old field), not a flat field.
  flat = {k for k in _ALL_FLAT if k in saved and not isinstance(saved[k], dict)}
  if not flat:
    return dict(saved)
  name = saved.get("estimator", "pes")
  out = {k: v for k, v in saved.items() if k not in flat}
  moved = {k: saved[k] for k in _FLAT_FIELDS.get(name, ()) if k in flat}
  out[name] = {**out.get(name, {}), **moved}
  return out


def with_defaults(saved: dict) -> dict:
  """``saved`` with the fields added since it was written at their ``default()`` values.

  Estimator sub-dicts are filled field by field (a field added to an hparams
  dataclass takes its default); other fields whole, as they were written. A
  new field's default must keep the old behaviour, so old runs resume.
  """
  defaults = json.loads(default().to_json_best_effort())
  out = {**defaults, **saved}
  for name in estimators.estimators():
    if isinstance(saved.get(name), dict):
      out[name] = {**defaults[name], **saved[name]}
  return out


def differences(saved: dict, current: dict) -> list[tuple[str, Any, Any]]:
  """``(field, saved value, current value)`` of the fields that forbid a resume, sorted.

  Fields are dotted (``pes.sigma``). Resumable fields are left out, and so are
  the sub-dicts of estimators other than the one both runs use (if they use
  different ones, ``estimator`` says so).
  """
  same = saved.get("estimator") == current.get("estimator")
  keep = current.get("estimator") if same else None
  a, b = _trajectory_fields(saved, keep), _trajectory_fields(current, keep)
  return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def incompatible_fields(saved: dict, current: dict) -> list[str]:
  """The fields of ``differences``."""
  return [k for k, _, _ in differences(saved, current)]


def _trajectory_fields(cfg: dict, estimator: str | None) -> dict:
  """``{dotted key: value}`` of the fields that can change theta's trajectory."""
  skip = (set(estimators.estimators()) | {cfg.get("estimator")}) - {estimator}
  out = {}
  for k, v in cfg.items():
    if k in RESUMABLE_CHANGES or k in skip:
      continue
    if k == estimator and isinstance(v, dict):
      out.update({f"{k}.{f}": x for f, x in v.items()})
    else:
      out[k] = v
  return out


def load_beside(file: str, name: str, arg: str | None = None) -> ml_collections.ConfigDict:
  """The config ``NAME.py`` in the folder of ``file``, with ``arg``: how a config builds
  on another (``configs/`` is not a package, so it cannot import its neighbours)."""
  path = os.path.join(os.path.dirname(os.path.abspath(file)), f"{name}.py")
  return load_file(f"{path}:{arg}" if arg else path)


def load_file(spec: str) -> ml_collections.ConfigDict:
  """``get_config(arg)`` of ``path/NAME.py[:arg]``, as ``--config`` loads it."""
  path, _, arg = spec.partition(":")
  module_spec = importlib.util.spec_from_file_location(
      os.path.splitext(os.path.basename(path))[0], path)
  mod = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(mod)
  return mod.get_config(arg or None)


def flat_keys(c: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
  """Every settable key of ``c``, nested ones dotted (``distributed.process_id``)."""
  keys = []
  for k, v in c.items():
    keys.append(prefix + k)
    if isinstance(v, ml_collections.ConfigDict):
      keys.extend(flat_keys(v, prefix + k + "."))
  return sorted(keys)


def unknown_key_message(c: ml_collections.ConfigDict, key: str) -> str | None:
  """The fix for ``--config.KEY=...`` when ``key`` is not in ``c``; None if it is.

  A flat estimator field (``--config.sigma``, as before estimators had
  sub-dicts) is pointed to the selected estimator's (``--config.pes.sigma``).
  """
  valid = flat_keys(c)
  if key in valid:
    return None
  close, why = _estimator_field_match(c, key), ""
  if close:
    why = (f"Estimator hyperparameters live in the selected estimator's sub-dict "
           f"(config.estimator = {c.estimator!r}). ")
  else:
    close = difflib.get_close_matches(key, valid, n=3, cutoff=0.6)
  hint = (f"Did you mean {' or '.join('--config.' + k for k in close)}? " if close else "")
  return (f"unknown config key {key!r} (from --config.{key}=...). {hint}{why}"
          f"Fix the flag's spelling; valid keys are: {', '.join(valid)}.")


def _estimator_field_match(c: ml_collections.ConfigDict, key: str) -> list[str]:
  """``["pes.sigma"]`` for ``key="sigma"`` (or "sigmaa") when ``c.estimator`` is "pes"."""
  sub = c.get(c.get("estimator", ""), None) if "." not in key else None
  if not isinstance(sub, ml_collections.ConfigDict):
    return []
  return [f"{c.estimator}.{m}" for m in difflib.get_close_matches(key, list(sub.keys()), n=1,
                                                                  cutoff=0.6)]
