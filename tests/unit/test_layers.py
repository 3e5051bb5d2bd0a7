"""The house's rules, read from the source (ast), so a change that breaks them fails here naming the line:

* layers: ``core`` imports nothing above it; ``clickhouse`` only ``core``; ``migrations`` and ``pipelines``
  (side by side) ``clickhouse`` and ``core``; ``runtime`` those; ``deploy`` anything below it; ``dev`` the
  library below ``deploy``; nothing imports ``cli``; ``deploy/helper.py`` (sent to targets) the standard library only;
* no import cycle between chops' modules;
* library modules import ``ops.*`` at the top: a function-level import hides a dependency (the task layer,
  ``ops/cli``, keeps its imports lazy so ``inv --list`` stays fast);
* sizes: no module over 600 lines, no function over 60 unless a ``# long:`` comment says why it reads better whole.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

# layer -> the layers it may import (besides itself and the package root, ``ops``)
ALLOWED = {
    "core": set(),
    "clickhouse": {"core"},
    "migrations": {"core", "clickhouse"},
    "pipelines": {"core", "clickhouse"},
    "runtime": {"core", "clickhouse", "migrations", "pipelines"},
    "deploy": {"core", "clickhouse", "migrations", "pipelines", "runtime"},
    "dev": {"core", "clickhouse", "migrations", "pipelines", "runtime"},
    "cli": {"core", "clickhouse", "migrations", "pipelines", "runtime", "deploy", "dev"},
}
STDLIB_ONLY = {"ops.deploy.helper"}
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 60


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in ALLOWED) else None


def imports(tree: ast.AST, module: str) -> list[tuple[str, int, bool]]:
    """(imported module, line, at the top) for every import in a module; ``from a import b`` counts as ``a.b``
    when ``a.b`` is a module of ours (the caller resolves that), else ``a``."""
    top = set(id(n) for n in tree.body)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno, id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                pkg = module.split(".")[: -node.level] if not module.endswith("__init__") else module.split(".")
                base = ".".join(pkg + ([base] if base else []))
            out += [(f"{base}.{a.name}", node.lineno, id(node) in top) for a in node.names]
    return out


def read_tree(root: Path) -> dict[str, tuple[Path, ast.AST]]:
    """Every module of the ``ops`` package under ``root``: name -> (path, parsed source)."""
    return {module_name(root, p): (p, ast.parse(p.read_text(), str(p))) for p in sorted((root / "ops").rglob("*.py"))}


def resolve(name: str, modules: set[str]) -> str | None:
    """The module of ours an imported name refers to (``ops.core.errors.BadInput`` -> ``ops.core.errors``)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def violations(root: Path) -> list[str]:
    """Every broken rule of the tree at ``root``, one line each, naming file, line and import."""
    tree = read_tree(root)
    modules = set(tree)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    found = []
    stdlib = set(sys.stdlib_module_names)
    for module, (path, parsed) in tree.items():
        where = path.relative_to(root)
        mine = layer_of(module)
        for name, line, at_top in imports(parsed, module):
            if module in STDLIB_ONLY and name.split(".")[0] not in stdlib and name.split(".")[0] != "__future__":
                found.append(f"{where}:{line}: imports {name}, but it runs on targets with the standard library only")
                continue
            target = resolve(name, modules) if name.startswith("ops") else None
            if target is None:
                continue
            if target == "ops.errors" and module != "ops.errors":
                found.append(f"{where}:{line}: imports ops.errors (the public name for pipeline modules); "
                             "use ops.core.errors")
            theirs = layer_of(target)
            graph[module].add(target)
            if mine and mine != "cli" and not at_top:
                found.append(f"{where}:{line}: imports {target} inside a function; library modules import ops.* "
                             "at the top")
            if mine and theirs and theirs != mine and theirs not in ALLOWED[mine]:
                found.append(f"{where}:{line}: {mine} imports {target} ({theirs} is not below {mine})")
    cycle = find_cycle({m: sorted(d - {m}) for m, d in graph.items()})
    if cycle:
        found.append("import cycle: " + " -> ".join(cycle + cycle[:1]))
    return list(dict.fromkeys(found))  # `from a import b, c` is one finding


def find_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    from ops.core.graph import find_cycle as find

    # a package imports its own modules (``__init__`` re-exports): that is containment, not a cycle
    return find({m: [d for d in deps if not d.startswith(m + ".")] for m, deps in graph.items()})


def long_code(root: Path) -> list[str]:
    found = []
    for module, (path, parsed) in read_tree(root).items():
        lines = path.read_text().splitlines()
        where = path.relative_to(root)
        if len(lines) > MAX_MODULE_LINES:
            found.append(f"{where}: {len(lines)} lines (at most {MAX_MODULE_LINES})")
        for node in ast.walk(parsed):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                first = (node.decorator_list[0].lineno if node.decorator_list else node.lineno) - 1
                said = any("# long:" in lines[i] for i in range(max(0, first - 3), min(len(lines), node.lineno + 3)))
                if length > MAX_FUNCTION_LINES and not said:
                    found.append(f"{where}:{node.lineno}: {node.name} is {length} lines (at most "
                                 f"{MAX_FUNCTION_LINES}, or a '# long:' comment saying why it reads better whole)")
    return found


def test_layers_are_kept_and_there_is_no_cycle():
    found = violations(ROOT)
    assert not found, "\n".join(found)


def test_modules_and_functions_are_short():
    found = long_code(ROOT)
    assert not found, "\n".join(found)


# --- the test of the test: it fails on a back-import, a hidden import, a cycle and a helper that grew a dependency ----

def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for d in {p.parent for p in root.rglob("*.py")}:
        (d / "__init__.py").touch()
    return root


@pytest.fixture
def tree(tmp_path):
    return lambda files: violations(write(tmp_path, {"ops/__init__.py": "ROOT = None\n", **files}))


def test_the_rules_pass_a_tree_that_keeps_them(tree):
    assert tree({
        "ops/core/errors.py": "class BadInput(Exception): pass\n",
        "ops/clickhouse/client.py": "from ops.core.errors import BadInput\n",
        "ops/pipelines/runner.py": "from ops import ROOT\nfrom ops.clickhouse import client\n",
        "ops/cli/db.py": "def migrate():\n    from ops.pipelines.runner import ROOT\n",
    }) == []


def test_a_back_import_fails_naming_it(tree):
    found = tree({"ops/core/settings.py": "from ops.clickhouse.client import connect\n",
                  "ops/clickhouse/client.py": "def connect(): pass\n"})
    assert found == ["ops/core/settings.py:1: core imports ops.clickhouse.client (clickhouse is not below core)"]


def test_side_by_side_packages_may_not_import_each_other(tree):
    found = tree({"ops/pipelines/backfill.py": "from ops.migrations.migrator import who\n",
                  "ops/migrations/migrator.py": "who = 1\n"})
    assert found == ["ops/pipelines/backfill.py:1: pipelines imports ops.migrations.migrator "
                     "(migrations is not below pipelines)"]


def test_nothing_imports_the_task_layer(tree):
    found = tree({"ops/runtime/health.py": "import ops.cli.base\n", "ops/cli/base.py": ""})
    assert found == ["ops/runtime/health.py:1: runtime imports ops.cli.base (cli is not below runtime)"]


def test_an_import_inside_a_library_function_fails(tree):
    found = tree({"ops/pipelines/runner.py": "def run():\n    from ops.core import errors\n",
                  "ops/core/errors.py": ""})
    assert found == ["ops/pipelines/runner.py:2: imports ops.core.errors inside a function; library modules import "
                     "ops.* at the top"]


def test_a_cycle_fails_naming_it(tree):
    found = tree({"ops/pipelines/runner.py": "from ops.pipelines import ledger\n",
                  "ops/pipelines/ledger.py": "from ops.pipelines.runner import STAGING\n"})
    assert len(found) == 1 and found[0].startswith("import cycle: ")
    assert set(found[0].removeprefix("import cycle: ").split(" -> ")) == {"ops.pipelines.runner", "ops.pipelines.ledger"}


def test_the_target_helper_may_use_the_standard_library_only(tree):
    found = tree({"ops/deploy/helper.py": "import json\nimport psutil\n"})
    assert found == ["ops/deploy/helper.py:2: imports psutil, but it runs on targets with the standard library only"]


def test_long_code_is_found(tmp_path):
    body = "".join(f"    x{i} = {i}\n" for i in range(61))
    write(tmp_path, {"ops/core/big.py": "def big():\n" + body + "\n# long: a table of cases reads better whole\n"
                                        "def table():\n" + body})
    assert long_code(tmp_path) == ["ops/core/big.py:1: big is 62 lines (at most 60, or a '# long:' comment saying "
                                   "why it reads better whole)"]


def test_the_readme_map_names_every_package_and_module():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Architecture"):]
    section = section[: section.index("\n## ", 4)] if "\n## " in section[4:] else section
    missing = []
    for path in sorted((ROOT / "ops").rglob("*.py")):
        rel = path.relative_to(ROOT / "ops")
        if rel.parts[0] == "cli" or rel.name == "__init__.py" or len(rel.parts) == 1:
            continue
        if f"{rel.parts[0]}/" not in section or rel.stem not in section:
            missing.append(str(rel))
    assert not missing, f"the README's architecture map does not name {missing}"
