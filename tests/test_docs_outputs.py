"""The outputs the documentation pastes are what the commands print today
(`python -m benchmarks docs-outputs`): the quick start in the default suite, the README's
three-method leaderboard (it trains a CNN) as deep and slow, the tutorial on the real PBC
images as realdata and slow."""

from pathlib import Path

import pytest

from benchmarks import __main__ as bench_cli
from benchmarks.docs_outputs import elide, normalise, parse, regenerate

ROOT = Path(__file__).resolve().parents[1]
PAGE = """# page
<!-- outputs-stamp -->old<!-- /outputs-stamp -->

```bash
bmbench validate recipes/quickstart.yaml
bmbench validate missing.yaml
```

<!-- output: bmbench validate missing.yaml | stderr, exit=2 -->
```
Error: somewhere else: recipe file not found
```
"""


def _assert_current(page: Path, data: Path | None = None):
    _, diffs = regenerate(page, **({"data": data} if data else {}), log=lambda s: None)
    assert not diffs, (f"{diffs[0]}\nregenerate with: python -m benchmarks docs-outputs --write "
                       f"{page.relative_to(ROOT)}")


def test_a_stale_output_is_found_and_rewritten(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(PAGE)
    fresh, diffs = regenerate(page, log=lambda s: None)
    assert len(diffs) == 1 and "Error: somewhere else" in diffs[0]
    assert "Error: missing.yaml: recipe file not found\n```" in fresh
    assert "<!-- outputs-stamp -->bmbench " in fresh and ">old<" not in fresh
    page.write_text(fresh)
    assert regenerate(page, log=lambda s: None)[1] == []


def test_skipped_commands_neither_run_nor_change_their_block(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(PAGE)
    fresh, diffs = regenerate(page, log=lambda s: None, skip=("missing.yaml",))
    assert diffs == [] and "Error: somewhere else" in fresh


def test_an_unexpected_exit_code_or_an_unshown_command_stops_the_check(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(PAGE.replace("exit=2", "exit=0"))
    with pytest.raises(RuntimeError, match="exited 2, expected 0"):
        regenerate(page, log=lambda s: None)
    page.write_text(PAGE.replace("bmbench validate missing.yaml\n```", "```"))
    with pytest.raises(ValueError, match="does not show in a bash fence"):
        regenerate(page, log=lambda s: None)
    with pytest.raises(ValueError, match="right above a plain"):
        parse("<!-- output: bmbench x -->\ntext\n")


def test_run_ids_timings_and_rates_are_ignored_and_varying_numbers_only_where_marked():
    a = ("results/runs/20261206T212628Z-pbc_classical-71ca31  macro_f1=0.9262\n"
         "1     221ac4  pbc_cnn  0.9498\nfeatures (train): 1,120/1,120 (100%), 32.5/s, 34.4 s\n")
    b = ("results/runs/20261207T101010Z-pbc_classical-0a0b0c  macro_f1=0.9262\n"
         "1     ffffff  pbc_cnn  0.9498\nfeatures (train): 1,120/1,120 (100%), 2,327.6/s, 0.5 s\n")
    assert normalise(a) == normalise(b)
    c = b.replace("0.9498", "0.9511")
    assert normalise(a) != normalise(c) and normalise(a, varies=True) == normalise(c, varies=True)


def test_elide_keeps_the_first_three_and_last_two_matching_lines():
    text = "start\n" + "".join(f"train epoch {i}/9\n" for i in range(1, 10)) + "end\n"
    assert elide(text, "train epoch").splitlines() == [
        "start", "train epoch 1/9", "train epoch 2/9", "train epoch 3/9", "...",
        "train epoch 8/9", "train epoch 9/9", "end"]


def test_the_benchmarks_command_line_dispatches_docs_outputs(capsys):
    assert bench_cli.main(["docs-outputs"]) == 0
    assert "usage: python -m benchmarks docs-outputs" in capsys.readouterr().out


def test_the_quick_start_page_shows_what_its_commands_print():
    _assert_current(ROOT / "docs" / "getting-started.md")


@pytest.mark.deep
@pytest.mark.slow  # trains the small CNN; not yet run against the current README block (see docs/development.md)
def test_the_readme_leaderboard_is_what_the_three_quick_start_runs_print():
    _assert_current(ROOT / "README.md")


@pytest.mark.slow
@pytest.mark.realdata
def test_the_tutorial_shows_what_its_commands_print_on_pbc(shared_datasets):
    _assert_current(ROOT / "docs" / "tutorial.md", shared_datasets)
