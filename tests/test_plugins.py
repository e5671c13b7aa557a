"""``--import MODULE`` on both CLIs: a task family defined outside the repository (the one
docs/tasks.md walks through) is meta-trained and evaluated without editing the repo."""

import json
import os
import re
import subprocess
import sys

import pytest

from meta_train import plugins

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
DOC = os.path.join(ROOT, "docs", "tasks.md")
_EXAMPLE = re.compile(r"<!-- example: my_family\.py -->\s*\n```python\n(.*?)```", re.S)


@pytest.fixture
def plugin_dir(tmp_path):
  if not os.path.exists(DOC):
    pytest.skip("docs/tasks.md is not in this checkout")
  with open(DOC) as f:
    (tmp_path / "my_family.py").write_text(_EXAMPLE.search(f.read()).group(1))
  return tmp_path


def _cli(args, cwd):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("PYTHONPATH", None)  # the plug-in must come from the working directory
  return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                        text=True, timeout=600)


def test_meta_train_imports_a_family_from_the_working_directory(plugin_dir):
  r = _cli(["-m", "meta_train", "--import", "my_family", "--config",
            os.path.join(ROOT, "configs", "tiny.py"), "--workdir", "run",
            "--config.task_family=my_family", "--config.outer_steps=2",
            "--config.eval_every=0", "--config.checkpoint_every=2"], plugin_dir)
  assert r.returncode == 0, r.stderr[-3000:]
  assert "my_family" in r.stdout and "Done: 2 outer steps" in r.stdout
  assert (plugin_dir / "run" / "export" / "final").exists()


def test_evaluate_imports_a_family_by_path(plugin_dir):
  r = _cli([os.path.join(ROOT, "scripts", "evaluate.py"), "--import",
            str(plugin_dir / "my_family.py"), "--tasks", "my_family", "--steps", "20",
            "--seeds", "1", "--num-points", "5", "--num-evals", "2", "--snapshot-cycles", "2",
            "--baselines", "none", "--optimizer", "mlp-demo-v0", "--out", "out"], plugin_dir)
  assert r.returncode == 0, r.stderr[-3000:]
  with open(plugin_dir / "out" / "results.json") as f:
    results = json.load(f)
  assert [t["family"] for t in results["tasks"].values()] == ["my_family"]
  assert len(results["runs"]) == 2  # tuned Adam and the shipped optimizer


def test_bad_import_names_the_fix(tmp_path):
  r = _cli(["-m", "meta_train", "--import", "no_such_plugin", "--config",
            os.path.join(ROOT, "configs", "tiny.py"), "--workdir", "run"], tmp_path)
  assert r.returncode == 2 and "no module named 'no_such_plugin'" in r.stderr
  with pytest.raises(plugins.PluginError, match="no such file"):
    plugins.import_module(str(tmp_path / "missing.py"))


def test_scan_argv():
  assert plugins.scan_argv(["--import", "a", "--x=1", "--import=b.py"]) == ["a", "b.py"]
