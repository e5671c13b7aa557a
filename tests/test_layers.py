"""The packages' layers point one way, and no import hides inside a function.

``learned_opt`` (optimizers) and ``tasks`` (training problems) are independent
bottom layers; ``meta_train`` sits above both (docs/STYLE: "Layers point one
way"). An import inside a function is allowed only for an optional heavy
third-party dependency listed in ``OPTIONAL_IN_FUNCTIONS``: an import of our own
modules there is how an import cycle gets hidden instead of fixed.

The sources are parsed with ``ast`` (nothing is imported), so the test also
holds for modules whose dependencies are not installed.
"""

from __future__ import annotations

import ast
import os
from typing import Iterator, NamedTuple

import pytest

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), ".."))
PACKAGES = ("learned_opt", "tasks", "meta_train")
# package -> the first-party packages it must not import.
FORBIDDEN = {"learned_opt": ("tasks", "meta_train"), "tasks": ("learned_opt", "meta_train"),
             "meta_train": ()}
# Third-party modules that may be imported inside a function, and why: each is
# slow to import or outside the core install, and only some code paths need it.
OPTIONAL_IN_FUNCTIONS = {
    "tensorflow_datasets": "slow to import; only tfds datasets need it",
    "matplotlib": "plots only",
    "sklearn": "the bundled digits dataset only",
    "tensorboardX": "TensorBoard logging only",
    "tqdm": "progress bars only",
    "jax.experimental.multihost_utils": "multi-host runs only",
    "importlib.metadata": "the installed-version lookup only",
}
# (file, function) -> modules it may import: a report of package versions reads
# them where it prints them.
ALLOWED_IN = {("meta_train/evaluation/evaluate.py", "environment"): ("flax", "optax")}


class Import(NamedTuple):
  file: str  # relative to the repository root, with "/"
  line: int
  names: tuple[str, ...]  # the dotted names it binds, e.g. ("jax.experimental.multihost_utils",)
  relative: bool
  function: str | None  # the enclosing function, or None at module or class level
  source: str


def sources(package: str) -> list[str]:
  """Every ``.py`` file of ``package``, relative to the repository root."""
  out = []
  for folder, _, files in os.walk(os.path.join(ROOT, package)):
    out += [os.path.relpath(os.path.join(folder, f), ROOT).replace(os.sep, "/")
            for f in files if f.endswith(".py")]
  return sorted(out)


def _imported_names(node: ast.Import | ast.ImportFrom) -> tuple[str, ...]:
  if isinstance(node, ast.Import):
    return tuple(a.name for a in node.names)
  base = node.module or ""
  return tuple(f"{base}.{a.name}" if base else a.name for a in node.names)


def imports(path: str, root: str = ROOT) -> Iterator[Import]:
  """The import statements of ``root/path``, each with its enclosing function (if any)."""
  with open(os.path.join(root, path)) as f:
    text = f.read()
  lines = text.splitlines()

  def walk(node: ast.AST, function: str | None) -> Iterator[Import]:
    for child in ast.iter_child_nodes(node):
      if isinstance(child, (ast.Import, ast.ImportFrom)):
        relative = isinstance(child, ast.ImportFrom) and child.level > 0
        yield Import(path, child.lineno, _imported_names(child), relative, function,
                     lines[child.lineno - 1].strip())
      inner = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else (
          "<lambda>" if isinstance(child, ast.Lambda) else function)
      yield from walk(child, inner)

  yield from walk(ast.parse(text, path), None)


def _top(name: str) -> str:
  return name.split(".")[0]


def _matches(name: str, allowed: str) -> bool:
  return name == allowed or name.startswith(allowed + ".")


def _where(imp: Import) -> str:
  scope = f" inside function {imp.function}()" if imp.function else ""
  return f"{imp.file}:{imp.line}{scope}: `{imp.source}`"


def test_every_package_is_found():
  for package in PACKAGES:
    assert f"{package}/__init__.py" in sources(package), package


@pytest.mark.parametrize("package", [p for p in PACKAGES if FORBIDDEN[p]])
def test_layers_point_one_way(package):
  bad = [imp for path in sources(package) for imp in imports(path)
         if not imp.relative and any(_top(n) in FORBIDDEN[package] for n in imp.names)]
  assert not bad, (f"{package} must not import {' or '.join(FORBIDDEN[package])} (they are "
                   "independent layers; move the shared code down into this package or up "
                   "into meta_train):\n" + "\n".join(map(_where, bad)))


@pytest.mark.parametrize("package", PACKAGES)
def test_no_first_party_import_inside_a_function(package):
  bad = [imp for path in sources(package) for imp in imports(path)
         if imp.function and (imp.relative or any(_top(n) in PACKAGES for n in imp.names))]
  assert not bad, ("first-party imports inside functions hide import cycles; import at the "
                   "top of the module and break the cycle by moving code to the layer it "
                   "belongs to:\n" + "\n".join(map(_where, bad)))


def _allowed_in_function(imp: Import) -> bool:
  extra = ALLOWED_IN.get((imp.file, imp.function), ())
  return all(any(_matches(n, a) for a in (*OPTIONAL_IN_FUNCTIONS, *extra)) for n in imp.names)


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_inside_functions_are_optional_heavy_dependencies(package):
  bad = [imp for path in sources(package) for imp in imports(path)
         if imp.function and not imp.relative
         and not any(_top(n) in PACKAGES for n in imp.names)  # reported by the test above
         and not _allowed_in_function(imp)]
  assert not bad, ("an import inside a function is only for an optional heavy dependency "
                   f"(tests/test_layers.py OPTIONAL_IN_FUNCTIONS: {sorted(OPTIONAL_IN_FUNCTIONS)});"
                   " move these to the top of their module:\n" + "\n".join(map(_where, bad)))


def _module(path: str) -> str:
  name = path[:-len(".py")].replace("/", ".")
  return name[:-len(".__init__")] if name.endswith(".__init__") else name


def _module_edges(package: str) -> dict[str, set[str]]:
  """module -> the first-party non-package modules it imports at module level.

  Imports of a package (its ``__init__``) are left out: every submodule's
  ``from pkg import x`` passes through it, and that is not a design cycle.
  """
  files = {_module(p): p for pkg in PACKAGES for p in sources(pkg)}
  modules = {m for m, p in files.items() if not p.endswith("__init__.py")}
  edges: dict[str, set[str]] = {}
  for path in sources(package):
    targets = set()
    for imp in imports(path):
      for name in imp.names if imp.function is None else ():
        parts = name.split(".")
        hit = next((".".join(parts[:i]) for i in range(len(parts), 0, -1)
                    if ".".join(parts[:i]) in modules), None)
        if hit:
          targets.add(hit)
    edges[_module(path)] = targets
  return edges


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
  """One import cycle as [a, b, ..., a], or None (depth-first search)."""
  state: dict[str, int] = {}  # 1: on the current path, 2: done
  stack: list[str] = []

  def visit(m: str) -> list[str] | None:
    state[m] = 1
    stack.append(m)
    for t in sorted(edges.get(m, ())):
      if state.get(t) == 1:
        return stack[stack.index(t):] + [t]
      if t not in state and (found := visit(t)):
        return found
    stack.pop()
    state[m] = 2
    return None

  for m in sorted(edges):
    if m not in state and (found := visit(m)):
      return found
  return None


@pytest.mark.parametrize("package", PACKAGES)
def test_no_module_level_import_cycles(package):
  cycle = _cycle(_module_edges(package))
  assert cycle is None, ("import cycle between modules (it only works while the import order "
                         "happens to suit it): " + " -> ".join(cycle or []) +
                         "; move the shared code into a module both can import.")


def test_the_checker_sees_function_level_imports(tmp_path):
  """The walker itself: a nested import is attributed to its function, a class-level one is not."""
  (tmp_path / "m.py").write_text(
      "import os\nclass C:\n  import json\n  def f(self):\n    from tasks import x\n"
      "def g():\n  def h():\n    from . import y\n  import matplotlib.pyplot as plt\n")
  found = [(i.line, i.names, i.relative, i.function) for i in imports("m.py", str(tmp_path))]
  assert found == [(1, ("os",), False, None), (3, ("json",), False, None),
                   (5, ("tasks.x",), False, "f"), (8, ("y",), True, "h"),
                   (9, ("matplotlib.pyplot",), False, "g")]
  assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
  assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
