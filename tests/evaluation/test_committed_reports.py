"""The committed evaluation reports still rebuild from their results.json, to the letter
(the recorded command line aside: one report was written to another --out and moved)."""

import glob
import json
import os

import pytest

from meta_train.evaluation import report

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
RESULTS = sorted(glob.glob(os.path.join(ROOT, "docs", "**", "results.json"), recursive=True))


@pytest.mark.parametrize("path", RESULTS, ids=lambda p: os.path.relpath(p, ROOT))
def test_committed_report_rebuilds(path):
  md_path = os.path.join(os.path.dirname(path), "report.md")
  if not os.path.exists(md_path):
    pytest.skip("no committed report.md beside it")
  with open(path) as f:
    rebuilt = report.markdown(json.load(f)).strip().splitlines()
  with open(md_path) as f:
    committed = f.read().strip().splitlines()
  drop = lambda lines: [l for l in lines if not l.startswith("- command:")]
  assert drop(rebuilt) == drop(committed)
