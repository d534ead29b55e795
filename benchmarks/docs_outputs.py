"""`python -m benchmarks docs-outputs [--write] [--data DIR] [--skip TEXT]... PAGE...`: re-run
the commands a documentation page shows and compare (or, with --write, replace) the outputs
it pastes; ``--skip TEXT`` leaves the markers whose command holds TEXT alone.

A page marks every pasted output with the command that printed it, right above its fence::

    <!-- output: bmbench leaderboard | stderr, varies, elide=train epoch, file=out.csv, exit=2 -->
    ```
    ...what the command printed...
    ```

and the commands whose output it does not show, but that must run first, as
``<!-- run: COMMAND -->``. Commands run in page order through bash, in one scratch folder
holding ``recipes/`` (this repository's) and a fresh feature cache, with ``bmbench`` on the
PATH as this checkout's CLI and ``$BMBENCH_DOCS_DATA`` naming the real data sets folder. A
fenced block whose first line is ``# PATH...`` (a recipe the page shows) is written to PATH
before anything runs. Options: ``stderr`` shows stderr interleaved with stdout; ``file=PATH``
shows that file instead; ``elide=TEXT`` keeps the first 3 and last 2 of the lines holding
TEXT and puts ``...`` between; ``exit=N`` is the expected exit code (default 0); ``varies``
marks outputs whose numbers vary with CPU non-determinism (the CNN's), so the comparison
ignores their numbers. Run ids, durations and rates differ on every run and are always
ignored. ``<!-- outputs-stamp -->...<!-- /outputs-stamp -->`` is rewritten with the
bmbench version and date. Paths of the scratch folder and of the real data folder are shown
as the page's relative paths, and only a progress bar's last line is kept (see :func:`tidy`).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "datasets"
MARK = re.compile(r"<!-- (output|run): (.+?) -->\n", re.S)
FENCE = re.compile(r"```(\w*)\n(.*?)```\n", re.S)
STAMP = re.compile(r"<!-- outputs-stamp -->.*?<!-- /outputs-stamp -->", re.S)
VOLATILE = (
    (re.compile(r"\d{8}T\d{6}Z-([\w.-]+?)-[0-9a-f]{6}\b"), r"<stamp>-\1-<id>"),  # run ids
    (re.compile(r"^(\d+\s+)[0-9a-f]{6}(\s)", re.M), r"\1<id>\2"),  # leaderboard short ids
    (re.compile(r"[\d,]+(\.\d+)?/s\b"), "<rate>/s"),
    (re.compile(r"\b\d+ images/s\b"), "<rate> images/s"),
    (re.compile(r"\b\d+(\.\d+)? (s|min)\b"), "<time> s"),
)
NUMBER = re.compile(r"\d[\d,]*(\.\d+)?(e[+-]?\d+)?")
PROGRESS = re.compile(r"^.*\(\d+%\), .*ETA .*\n", re.M)  # a progress bar's intermediate lines


@dataclass
class Block:
    """One marked output on a page: the command, its options and the fence it fills."""

    kind: str
    command: str
    options: dict = field(default_factory=dict)
    start: int = 0
    end: int = 0
    shown: str = ""


def parse(text: str) -> list[Block]:
    """The ``output`` and ``run`` markers of a page, in order."""
    blocks = []
    for m in MARK.finditer(text):
        command, _, opts = m.group(2).partition(" | ")
        options = dict(o.strip().partition("=")[::2] for o in opts.split(",") if o.strip())
        block = Block(m.group(1), command.strip(), options)
        if block.kind == "output":
            fence = FENCE.match(text, m.end())
            if not fence or fence.group(1):
                raise ValueError(f"<!-- output: {block.command} --> must sit right above a plain ``` fence")
            block.start, block.end, block.shown = fence.start(2), fence.end(2), fence.group(2)
        blocks.append(block)
    return blocks


def shown_commands(text: str) -> str:
    """The text of every ``bash`` fence of a page (an output's command must appear there)."""
    return "\n".join(m.group(2) for m in FENCE.finditer(text) if m.group(1) == "bash")


def elide(text: str, needle: str, head: int = 3, tail: int = 2) -> str:
    lines = text.splitlines()
    hits = [i for i, line in enumerate(lines) if needle in line]
    if len(hits) <= head + tail:
        return text
    drop = set(hits[head:-tail])
    out = []
    for i, line in enumerate(lines):
        if i in drop:
            if i == hits[head]:
                out.append("...")
            continue
        out.append(line)
    return "\n".join(out) + "\n"


def normalise(text: str, varies: bool = False) -> str:
    for pattern, repl in VOLATILE:
        text = pattern.sub(repl, text)
    if varies:
        text = NUMBER.sub("<n>", text)
    return "\n".join(line.rstrip() for line in text.splitlines())


def _scratch(folder: Path, text: str, data: Path) -> dict:
    (folder / "recipes").symlink_to(REPO / "recipes")
    (folder / "bin").mkdir()
    shim = folder / "bin" / "bmbench"
    shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m bmbench.cli "$@"\n')
    shim.chmod(0o755)
    for m in FENCE.finditer(text):
        first = m.group(2).split("\n", 1)[0]
        if m.group(1) == "yaml" and first.startswith("# ") and first[2:].split(":")[0].endswith(".yaml"):
            path = folder / first[2:].split(":")[0].strip()
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(m.group(2))
    env = {k: v for k, v in os.environ.items() if not k.startswith("BMBENCH_")}
    return {**env, "PATH": f"{folder / 'bin'}:{env.get('PATH', '')}", "BMBENCH_CACHE": str(folder / "cache"),
            "BMBENCH_DOCS_DATA": str(data), "PYTHONPATH": os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]),
            "COLUMNS": "100", "TZ": "UTC"}


def _run(block: Block, folder: Path, env: dict, log) -> str:
    log(f"$ {block.command}")
    stderr = subprocess.STDOUT if "stderr" in block.options else subprocess.PIPE
    proc = subprocess.run(["bash", "-c", block.command], cwd=folder, env=env, stdout=subprocess.PIPE,
                          stderr=stderr, text=True)
    expected = int(block.options.get("exit", 0))
    if proc.returncode != expected:
        raise RuntimeError(f"`{block.command}` exited {proc.returncode}, expected {expected}:\n"
                           f"{proc.stdout[-3000:]}{proc.stderr[-3000:] if proc.stderr else ''}")
    out = (folder / block.options["file"]).read_text() if "file" in block.options else proc.stdout
    out = tidy(out, folder, Path(env["BMBENCH_DOCS_DATA"]))
    return elide(out, block.options["elide"]) if "elide" in block.options else out


def tidy(out: str, folder: Path, data: Path) -> str:
    """What differs with the machine, not with bmbench: the scratch folder's absolute path
    (shown relative to it), the real data folder that ``data/`` links to (shown as
    ``data/``) and the intermediate lines of a progress bar (only its last line stays)."""
    for base in {str(folder.resolve()), str(folder)}:
        out = out.replace(base + "/", "")
    for base in {str(data.resolve()), str(data)}:
        out = out.replace(base + "/", "data/")
    return PROGRESS.sub("", out)


def regenerate(page: Path, data: Path = DATA, log=print, skip: tuple[str, ...] = ()) -> tuple[str, list[str]]:
    """Run the page's marked commands; return (the page with fresh outputs, differences).
    Markers whose command contains one of ``skip`` neither run nor change."""
    text = page.read_text()
    blocks = [b for b in parse(text) if not any(s in b.command for s in skip)]
    shown = shown_commands(text)
    missing = [b.command for b in blocks if b.kind == "output" and b.command not in shown]
    if missing:
        raise ValueError(f"{page}: output of a command the page does not show in a bash fence: {missing[0]}")
    fresh, diffs = text, []
    with tempfile.TemporaryDirectory(prefix="bmbench-docs-") as tmp:
        folder = Path(tmp)
        env = _scratch(folder, text, data)
        for block in reversed([(b, _run(b, folder, env, log)) for b in blocks]):
            b, out = block
            if b.kind != "output":
                continue
            fresh = fresh[:b.start] + out + fresh[b.end:]
            varies = "varies" in b.options
            if normalise(out, varies) != normalise(b.shown, varies):
                diffs.append(f"{page.name}: the output of `{b.command}` differs:\n--- page\n{b.shown}--- now\n{out}")
    return _stamp(fresh), diffs[::-1]


def _stamp(text: str) -> str:
    from bmbench import __version__

    return STAMP.sub(f"<!-- outputs-stamp -->bmbench {__version__} on {date.today().isoformat()}"
                     "<!-- /outputs-stamp -->", text)


def run(argv: list[str]) -> str:
    write = "--write" in argv
    data = Path(argv[argv.index("--data") + 1]) if "--data" in argv else DATA
    skip = tuple(argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--skip")
    pages = [a for i, a in enumerate(argv) if not a.startswith("--") and (i == 0 or argv[i - 1] not in ("--data", "--skip"))]
    if not pages:
        return "usage: python -m benchmarks docs-outputs [--write] [--data DIR] [--skip TEXT]... PAGE..."
    report, failed = [], False
    for name in pages:
        page = Path(name)
        fresh, diffs = regenerate(page, data, log=lambda s: print(s, file=sys.stderr), skip=skip)
        if write:
            page.write_text(fresh)
            report.append(f"{page}: {len(diffs)} output(s) rewritten")
        else:
            report += diffs or [f"{page}: every output matches"]
            failed = failed or bool(diffs)
    if failed:
        print("\n".join(report))
        raise SystemExit(1)
    return "\n".join(report)
