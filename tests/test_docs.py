"""The python examples of README.md and docs/*.md run, so they cannot rot.

Each file's ```python blocks run top to bottom in one namespace (later blocks
build on earlier ones), from the repository root, after a prelude that defines
the names the docs leave to the reader: ``key`` (a PRNG key) and ``N`` (a run
length). A block preceded by ``<!-- skip-doctest: REASON -->`` is a fragment
that cannot run alone (it names variables of a loop shown elsewhere); the
reason is required, and such blocks are counted so they stay rare.
"""

import glob
import os
import re

import pytest

ROOT = os.path.join(os.path.dirname(__file__), "..")
FILES = sorted(glob.glob(os.path.join(ROOT, "docs", "*.md"))) + [os.path.join(ROOT, "README.md")]
PRELUDE = "import jax, jax.numpy as jnp, optax\nkey = jax.random.key(0)\nN = 100\n"
_BLOCK = re.compile(r"(<!-- skip-doctest: ([^>]+?) -->\s*\n)?```python\n(.*?)```", re.S)


def blocks(path: str) -> list[tuple[str | None, str]]:
  """``(skip_reason, code)`` of every python block of a markdown file, in order."""
  with open(path) as f:
    return [(m.group(2), m.group(3)) for m in _BLOCK.finditer(f.read())]


@pytest.mark.parametrize("path", [f for f in FILES if os.path.exists(f)],
                         ids=lambda p: os.path.relpath(p, ROOT))
def test_doc_examples_run(path, monkeypatch, tmp_path):
  found = blocks(path)
  runnable = [code for reason, code in found if reason is None]
  if not runnable:
    pytest.skip("no python examples")
  monkeypatch.chdir(ROOT)
  namespace = {"__name__": "__doc_example__"}
  exec(compile(PRELUDE, "<prelude>", "exec"), namespace)  # pylint: disable=exec-used
  for i, code in enumerate(runnable):
    try:
      exec(compile(code, f"{os.path.basename(path)}[block {i}]", "exec"), namespace)  # pylint: disable=exec-used
    except Exception as e:  # pylint: disable=broad-except
      pytest.fail(f"{os.path.relpath(path, ROOT)}, python block {i}, fails: "
                  f"{type(e).__name__}: {e}\n--- the block ---\n{code}")


def test_skipped_fragments_are_rare():
  skipped = [(os.path.basename(p), r) for p in FILES if os.path.exists(p)
             for r, _ in blocks(p) if r is not None]
  assert len(skipped) <= 3, skipped
