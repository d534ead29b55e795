"""The README and the documentation site are checked against the code they document."""

import re
from pathlib import Path

import yaml

from bmbench.cli import main
from bmbench.data.describe import describe_kinds
from bmbench.models.registry import list_families

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
DOCS = ROOT / "docs"
TEST_COMMAND = "pip install -e '.[test]' && pytest"


def docs_text(*skip: str) -> str:
    return "\n".join(p.read_text() for p in sorted(DOCS.rglob("*.md")) if p.name not in skip)


def test_datasets_table_is_current():
    page = (DOCS / "concepts" / "datasets.md").read_text()
    block = re.search(r"<!-- datasets-table:start -->\n(.*)<!-- datasets-table:end -->", page, re.S)
    assert block, "docs/concepts/datasets.md lost its datasets table markers"
    assert block.group(1) == describe_kinds("markdown"), (
        "the datasets table is stale: regenerate it with `bmbench datasets --format markdown`")


def test_ci_runs_the_readme_test_command_and_builds_the_docs():
    assert f"```bash\n{TEST_COMMAND}\n```" in README
    assert f"```bash\n{TEST_COMMAND}\n```" in (DOCS / "getting-started.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.strip().endswith(TEST_COMMAND)
    assert "pip install -e '.[docs]'" in ci and "mkdocs build --strict" in ci


QUICK_COMMAND = 'pytest -m "not deep and not realdata"'


def test_the_quick_subset_is_given_beside_the_full_suite_with_how_long_each_takes():
    markers = (ROOT / "setup.cfg").read_text()
    for name in re.findall(r"not (\w+)", QUICK_COMMAND):
        assert f"\n    {name}: " in markers, f"the quick subset names the unregistered marker {name}"
    for page in (README, (DOCS / "getting-started.md").read_text()):
        assert f"```bash\n{QUICK_COMMAND}\n```" in page
        tests = page[page.index(TEST_COMMAND):page.index(QUICK_COMMAND) + 200]
        assert len(re.findall(r"\d+ minutes", tests)) >= 2, "say how long the full suite and the quick subset take"


def test_readme_is_a_front_page():
    assert len(README.splitlines()) <= 250, "the README is for visitors: move reference text into docs/"
    for target in re.findall(r"\]\(((?!https?:)[^)#]+)", README):
        assert (ROOT / target).is_file(), f"README links to missing {target}"


def test_every_page_is_in_the_nav():
    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text().replace("!!", ""))["nav"]

    def pages(node):
        if isinstance(node, str):
            yield node
        elif isinstance(node, dict):
            for v in node.values():
                yield from pages(v)
        else:
            for v in node:
                yield from pages(v)
    listed = set(pages(nav))
    on_disk = {p.relative_to(DOCS).as_posix() for pattern in ("*.md", "*.ipynb") for p in DOCS.rglob(pattern)}
    assert on_disk == listed, f"not in mkdocs.yml nav: {on_disk - listed}; missing: {listed - on_disk}"


def test_command_reference_is_generated_from_the_cli():
    page = (DOCS / "reference" / "cli.md").read_text()
    assert ":module: bmbench.cli" in page and ":command: main" in page


def test_every_command_and_family_is_explained_beyond_the_generated_reference():
    text = docs_text("cli.md")
    for name, cmd in main.commands.items():
        assert f"bmbench {name}" in text, f"`bmbench {name}` is explained on no docs page"
        for sub in getattr(cmd, "commands", {}):
            assert f"bmbench {name} {sub}" in text
    families = (DOCS / "concepts" / "families.md").read_text()
    for family in list_families():
        assert f"| `{family.name}` |" in families, f"family {family.name} is not in docs/concepts/families.md"


def test_pictures_the_docs_show_exist():
    for page in DOCS.rglob("*.md"):
        for target in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", page.read_text()):
            assert (page.parent / target).resolve().is_file(), f"{page.name} shows missing {target}"
