"""The layers of the package, checked by tools rather than described in prose."""

import ast
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "bmbench"


def test_import_linter_contracts_hold():
    """setup.cfg [importlinter]: views -> runs -> models | audit -> features | deep -> data ->
    config -> metrics -> core, imports only downwards; metrics import nothing of bmbench."""
    exe = shutil.which("lint-imports")
    if exe is None:
        pytest.fail("lint-imports not found: pip install -e '.[test]'")
    done = subprocess.run([exe, "--config", str(ROOT / "setup.cfg")], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:]


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_no_private_name_is_imported_from_another_package():
    offences = []
    for path in PACKAGE.rglob("*.py"):
        here = _module(path)
        package = here if path.name == "__init__.py" else here.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            elif (node.module or "").startswith("bmbench"):
                target = node.module
            else:
                continue
            private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
            if private and _top(target) != _top(here):
                offences.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {private} from {target}")
    assert not offences, "\n".join(offences)


def test_no_module_imports_itself_through_others():
    """No import cycle anywhere in the package (function-level imports included)."""
    import grimp

    graph = grimp.build_graph("bmbench")
    cycles = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            chain = graph.find_shortest_chain(importer=imported, imported=module)
            if chain:
                cycles.append(" -> ".join((module, *chain)))
    assert not cycles, "\n".join(sorted(set(cycles))[:10])
