"""The CLI: bad input fails fast with a clear message; a tiny evaluation runs, resumes and
reproduces by seed."""

import importlib.util
import json
import os
import time

import pytest

import learned_opt
from meta_train import evaluation
from meta_train.evaluation import suites

_SPEC = importlib.util.spec_from_file_location(
    "evaluate_cli", os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "evaluate.py"))
cli = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(cli)

TINY = ["--tasks", "tiny", "--steps", "20", "--seeds", "1", "--num-points", "5",
        "--num-evals", "2", "--snapshot-cycles", "2"]


@pytest.mark.parametrize("args, message", [
    (["--optimizer", "nosuch"], "unknown optimizer 'nosuch'"),
    (["--tasks", "nosuite"], "unknown task suite 'nosuite'"),
    (["--baselines", "adam,sgdr"], "unknown baseline 'adam'"),
    (["--steps", "25"], "must be a multiple of"),
    (["--steps", "0"], "num_steps must be an int >= 1"),
    (["--seeds", "0"], "--seeds must be an int >= 1"),
    (["--tasks", "quadratic,image_mlp,nofamily"], "unknown task suite 'nofamily'"),
])
def test_bad_input_fails_fast(args, message, tmp_path, capsys):
  argv = ["--optimizer", "mlp", *TINY, "--out", str(tmp_path / "o"), *args]
  t0 = time.perf_counter()
  assert cli.main(argv) == 2
  assert time.perf_counter() - t0 < 10  # nothing was compiled
  err = capsys.readouterr().err
  assert message in err, err
  assert not (tmp_path / "o" / "results.json").exists()


def test_the_tiny_suite_runs_on_default_flags(tmp_path):
  plan = evaluation.prepare(cli.parse(["--tasks", "tiny", "--out", str(tmp_path / "o")]))
  assert plan.setting.num_steps == 40
  assert plan.setting.num_points == 40  # one window per step, not 50 > 40
  long = evaluation.prepare(cli.parse(["--tasks", "quadratic", "--out", str(tmp_path / "q")]))
  assert (long.setting.num_steps, long.setting.num_points) == (500, 50)


@pytest.mark.parametrize("args, message", [
    (["--optimizer", "nosuch"], "unknown optimizer 'nosuch'"),
    (["--baselines", "bogus"], "unknown baseline 'bogus'"),
    (["--tasks", "nosuite"], "unknown task suite 'nosuite'"),
])
def test_a_bad_name_is_reported_before_a_bad_value(args, message, tmp_path, capsys):
  argv = [*TINY, "--out", str(tmp_path / "o"), *args, "--num-points", "100"]  # > 20 steps
  assert cli.main(argv) == 2
  err = capsys.readouterr().err
  assert message in err and "num_points" not in err, err


@pytest.mark.parametrize("content, message", [
    ('{"version": 1, "setting": {"num_steps": 2', "is not valid JSON"),  # cut off
    ("[]", "holds a JSON list"),
    ('{"version": 1}', "lacks (or has malformed)"),
    ('{"setting": {}, "tasks": {}, "methods": {}, "runs": [], "invocations": []}', "['runs']"),
])
def test_a_broken_results_file_is_an_error_naming_the_fix(content, message, tmp_path, capsys):
  out = tmp_path / "o"
  out.mkdir()
  (out / "results.json").write_text(content)
  t0 = time.perf_counter()
  assert cli.main([*TINY, "--baselines", "none", "--out", str(out)]) == 2
  assert time.perf_counter() - t0 < 10  # nothing was compiled
  err = capsys.readouterr().err
  assert err.startswith("error: ") and message in err and "new --out" in err, err
  assert (out / "results.json").read_text() == content  # left as it was


def test_out_naming_an_existing_file_is_an_error(tmp_path, capsys):
  (tmp_path / "o").write_text("not a directory")
  assert cli.main([*TINY, "--baselines", "none", "--out", str(tmp_path / "o")]) == 2
  err = capsys.readouterr().err
  assert "is an existing file, not a directory" in err, err


def _run(out):
  argv = ["--optimizer", "mlp", *TINY, "--out", str(out),
          "--baselines", "adam_tuned,lr_range_test,snapshot_ensemble", "--ablations"]
  assert cli.main(argv) == 0
  with open(out / "results.json") as f:
    return json.load(f)


def test_tiny_end_to_end_resumes_and_reproduces(tmp_path, capsys):
  a = _run(tmp_path / "a")
  for name in ("report.md", "speedups.png",
               *(f"curves_{suites.task_id(f, s)}.png" for f, s in suites.load_suite("tiny").tasks)):
    assert (tmp_path / "a" / name).exists(), name
  report = (tmp_path / "a" / "report.md").read_text()
  for needle in ("win rate vs tuned Adam", "Metric definitions", "Reproducibility",
                 "mlp[no_loss]", "mlp[no_momenta]", "snapshot", "Seconds to reach"):
    assert needle in report
  # 2 tasks x (3 baselines + mlp + 3 ablations) x 1 seed.
  assert len(a["runs"]) == 14
  capsys.readouterr()
  again = _run(tmp_path / "a")  # resumes: nothing recomputed
  assert "0 runs to do" in capsys.readouterr().out
  assert again["runs"] == a["runs"]
  b = _run(tmp_path / "b")  # a fresh directory, same seeds: the same curves
  strip = lambda r: {k: (v["train"], v["eval"], v["steps"]) for k, v in r["runs"].items()}
  assert strip(a) == strip(b)


def test_a_method_that_cannot_run_on_a_task_is_listed_not_fatal(tmp_path, monkeypatch):
  from meta_train.evaluation import baselines as baselines_lib  # pylint: disable=g-import-not-at-top
  from meta_train.evaluation.base import NotApplicable  # pylint: disable=g-import-not-at-top

  def only_quadratics(task, seed, setting):
    if "quadratic" not in task.name:
      raise NotApplicable("needs a quadratic")
    return baselines_lib.adam_default(task, seed, setting)

  monkeypatch.setitem(baselines_lib._BASELINES, "quad_only", baselines_lib.Baseline(
      "quad_only", "Adam 1e-3 on quadratics only", "1 run (none)", only_quadratics))
  argv = [*TINY, "--optimizer", "mlp", "--baselines", "quad_only", "--out", str(tmp_path / "o")]
  assert cli.main(argv) == 0
  results = json.loads((tmp_path / "o" / "results.json").read_text())
  skipped = results["not_applicable"]
  assert len(skipped) == 1 and next(iter(skipped.values())) == "needs a quadratic"
  ran = [k for k in results["runs"] if "|quad_only|" in k]
  assert len(ran) == 1 and "quadratic" in ran[0]
  report = (tmp_path / "o" / "report.md").read_text()
  assert "## Not applicable" in report and "`quad_only` on" in report
  assert cli.main(argv) == 0  # resuming does not retry it
  assert json.loads((tmp_path / "o" / "results.json").read_text())["not_applicable"] == skipped


def test_a_baseline_missing_its_extra_is_left_out_of_all_and_refused_by_name(tmp_path, monkeypatch,
                                                                              capsys):
  from meta_train.evaluation import baselines as baselines_lib  # pylint: disable=g-import-not-at-top
  monkeypatch.setitem(baselines_lib._BASELINES, "needs_extra", baselines_lib.Baseline(
      "needs_extra", "x", "1 run (none)", baselines_lib.adam_default,
      unavailable="it needs somelib: run `pip install -e '.[some]'`"))
  plan = evaluation.prepare(cli.parse([*TINY, "--out", str(tmp_path / "o")]))
  assert "needs_extra" not in [m.name for m in plan.methods]
  assert cli.main([*TINY, "--baselines", "needs_extra", "--out", str(tmp_path / "o")]) == 2
  assert "pip install -e '.[some]'" in capsys.readouterr().err


def test_stored_results_without_a_newer_hparam_still_match_their_method():
  """Results written before ``mlp`` gained ``vector_step`` resume: a stored method lacking a
  hyperparameter matches if the new one has it at its default, and only then."""
  from meta_train.evaluation.evaluate import _same_method
  arch = learned_opt.get("mlp", step_scale="prodigy_muon", step_mult=1.0)
  new = {"source": "s", "arch": "mlp", "hparams": arch.hparams(), "theta_sha256": "ab",
         "kind": "learned"}
  old = dict(new, hparams={k: v for k, v in new["hparams"].items()
                           if k not in ("vector_step", "vector_step_init")})
  assert _same_method(old, new) and _same_method(new, new)
  on = dict(new, hparams=learned_opt.get("mlp", step_scale="prodigy_muon", step_mult=1.0,
                                         vector_step=True).hparams())
  assert not _same_method(old, on)  # the absent field was not at its default
  assert not _same_method(old, dict(new, theta_sha256="cd"))
  assert not _same_method(dict(old, hparams=dict(old["hparams"], step_mult=2.0)), new)
  assert not _same_method(dict(new, hparams=dict(new["hparams"], gone=1)), new)  # a removed field
  assert _same_method({"kind": "baseline", "x": 1}, {"kind": "baseline", "x": 1})
