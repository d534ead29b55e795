"""setup.cfg bounds every dependency, constraints.txt pins each one inside its bounds, and .ci/run installs by it."""

import configparser
import os
import re
import subprocess
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def _requirements() -> list[Requirement]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    lines = cfg["options"]["install_requires"].splitlines()
    lines += cfg["options.extras_require"]["test"].splitlines()
    return [Requirement(line) for line in lines if line.strip()]


def _pins() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)", line)
        if m:
            pins[_norm(m.group(1))] = Version(m.group(2))
    return pins


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.mark.parametrize("req", _requirements(), ids=str)
def test_every_dependency_has_an_upper_bound(req):
    assert any(s.operator in ("<", "<=", "==", "~=") for s in req.specifier), (
        f"setup.cfg: {req} has no upper bound; add <NEXT_MAJOR so a new major release cannot break installs")


@pytest.mark.parametrize("req", _requirements(), ids=str)
def test_the_lock_pins_every_dependency_within_its_bounds(req):
    pins = _pins()
    assert _norm(req.name) in pins, f"constraints.txt lacks {req.name}: run `bash .ci/lock`"
    assert req.specifier.contains(pins[_norm(req.name)], prereleases=True), (
        f"constraints.txt pins {req.name}=={pins[_norm(req.name)]} outside {req.specifier}: run `bash .ci/lock`")


def test_ci_installs_locked_unless_asked_for_the_newest():
    script = (ROOT / ".ci" / "run").read_text()
    assert 'PIP_CONSTRAINT="$PWD/constraints.txt"' in script
    assert "BMBENCH_CI_LATEST" in script


def _git_ignored(rel: str) -> bool:
    done = subprocess.run(["git", "check-ignore", "-q", rel], cwd=ROOT, capture_output=True)
    if done.returncode == 128:
        pytest.skip("not a git checkout")
    return done.returncode == 0


@pytest.mark.parametrize("folder", ["runs", "splits", "ablations", "audits", "cache", "reports",
                                    "reference/runs", "reference/cross_runs", "any-future-folder"])
def test_gitignore_covers_what_bmbench_writes_under_results(folder):
    assert _git_ignored(f"results/{folder}/x.json")


@pytest.mark.parametrize("kept", ["README.md", "reference/pbc.md", "reference/COMMANDS.md"])
def test_gitignore_keeps_the_shipped_results(kept):
    assert not _git_ignored(f"results/{kept}")


def _stub(path: Path, body: str) -> None:
    path.write_text("#!/usr/bin/env bash\n" + body + "\n")
    path.chmod(0o755)


def test_ci_stops_at_a_failed_install_and_leaves_no_scratch_behind(tmp_path):
    """.ci/run with stand-in tools: the docs install fails, so nothing after it may run."""
    bin_dir, scratch_parent, log = tmp_path / "bin", tmp_path / "tmp", tmp_path / "log"
    bin_dir.mkdir()
    scratch_parent.mkdir()
    _stub(bin_dir / "python3", f'mkdir -p "$3/bin"; echo "PATH={bin_dir}:$PATH" > "$3/bin/activate"')
    _stub(bin_dir / "python", "exit 0")
    _stub(bin_dir / "pip", f'echo "pip $*" >> {log}; exit 1')
    for tool in ("mkdocs", "pytest"):
        _stub(bin_dir / tool, f'echo "{tool}" >> {log}')
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "TMPDIR": str(scratch_parent)}
    done = subprocess.run(["bash", str(ROOT / ".ci" / "run")], env=env, capture_output=True, text=True)
    assert done.returncode != 0
    assert log.read_text().splitlines() == ["pip install -e .[docs]"]
    assert list(scratch_parent.iterdir()) == [], "the CI scratch folder (venv, cache, site) was left behind"
