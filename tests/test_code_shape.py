"""The style guide's size rule, checked: no function in the packages is over 60 lines.

(``scripts/`` may hold a longer script-level driver; the packages may not. Long
functions are where a newcomer gets lost, and where the next change goes wrong.)
"""

import ast
import glob
import os

ROOT = os.path.join(os.path.dirname(__file__), "..")
PACKAGES = ("learned_opt", "tasks", "meta_train")
MAX_LINES = 60


def test_no_function_over_60_lines():
  long = []
  for pkg in PACKAGES:
    for path in sorted(glob.glob(os.path.join(ROOT, pkg, "**", "*.py"), recursive=True)):
      with open(path) as f:
        tree = ast.parse(f.read())
      for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
          lines = node.end_lineno - node.lineno + 1
          if lines > MAX_LINES:
            long.append(f"{os.path.relpath(path, ROOT)}:{node.lineno} {node.name} ({lines} lines)")
  assert not long, "split these functions (STYLE.md, 'Code shape'):\n" + "\n".join(long)
