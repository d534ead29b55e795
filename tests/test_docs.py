"""The README is generated from, or checked against, the code it documents."""

import re
from pathlib import Path

from bmbench.cli import main
from bmbench.data.describe import describe_kinds
from bmbench.models.registry import list_families

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_datasets_table_is_current():
    block = re.search(r"<!-- datasets-table:start -->\n(.*)<!-- datasets-table:end -->", README, re.S)
    assert block, "README lost its datasets table markers"
    assert block.group(1) == describe_kinds("markdown"), (
        "README datasets table is stale: regenerate it with `bmbench datasets --format markdown`")


def test_ci_runs_the_readme_test_command():
    command = "pip install -e '.[test]' && pytest"
    assert f"```bash\n{command}\n```" in README
    assert (ROOT / ".ci" / "run").read_text().strip().endswith(command)


def test_every_command_and_family_is_documented():
    for name, cmd in main.commands.items():
        assert f"bmbench {name}" in README, f"`bmbench {name}` is not in the README"
        for sub in getattr(cmd, "commands", {}):
            assert f"bmbench {name} {sub}" in README
    for family in list_families():
        assert f"| `{family.name}` |" in README, f"family {family.name} is not in the README"
