"""The documentation's notebooks (docs/notebooks/) run top to bottom: the quickstart on
synthetic cells on every test run, the PBC walk-through on the real images (realdata, slow).

``python tests/test_notebooks.py`` executes the quickstart again and writes it back with its
outputs (the documentation site shows them); the test checks that the committed outputs
are what the notebook produces now.
"""

import os
import re
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "docs" / "notebooks"


def execute(name: str, workdir: Path, env: dict | None = None, timeout: int = 600):
    """Run ``docs/notebooks/<name>.ipynb`` in a kernel whose working folder is ``workdir``
    (with the repository's recipes beside it, and its own results store and cache)."""
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    (workdir / "recipes").symlink_to(ROOT / "recipes")
    saved = dict(os.environ)
    os.environ.update({"PYTHONPATH": str(ROOT), "BMBENCH_CACHE": str(workdir / "cache"),
                       "MPLBACKEND": "Agg", **(env or {})})
    os.environ.pop("BMBENCH_RESULTS", None)  # ./results in the working folder: the paths a user sees
    os.environ.pop("COLUMNS", None)
    try:
        client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                         resources={"metadata": {"path": str(workdir)}})
        client.execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return nb


def outputs(nb) -> list[tuple[int, str]]:
    """(cell index, text) of every output: plain text, HTML and stream text."""
    found = []
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out["output_type"] == "stream":
                found.append((i, out["text"]))
            elif out["output_type"] == "error":
                found.append((i, "\n".join(out["traceback"])))
            else:
                data = out.get("data", {})
                found.append((i, data.get("text/plain", "") + data.get("text/html", "")))
    return found


def key_figures(nb) -> list[str]:
    """The scores the quickstart shows (``macro_f1=0.8161``, CIs ``[0.7000, 0.9008]``): they
    must not change with the day or the machine."""
    text = "\n".join(t for _, t in outputs(nb) if "macro_f1=" in t or "Verdict" in t)
    return re.findall(r"macro_f1=\d\.\d{4}|\[\d\.\d{4}, \d\.\d{4}\]|p = \d\.\d+", text)


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    return execute("quickstart", tmp_path_factory.mktemp("nb"))


def test_the_quickstart_notebook_runs_top_to_bottom(quickstart):
    texts = outputs(quickstart)
    errors = [t for _, t in texts if "Error" in t and "Traceback" in t]
    assert not errors, errors[0][-3000:]
    last = [c for c in quickstart.cells if c.cell_type == "code"][-1]
    error = [o for o in last.outputs if o["output_type"] == "error"]
    # the deliberate mistake: the CLI's one line, no traceback
    assert len(error) == 1 and error[0]["traceback"] == [
        "RecipeError: recipes/quickstart.yaml (with --set overrides): split.tset: unknown key (did you mean "
        "'test'?); valid keys here: allow_leaky, folds, group_by, on_leak, seed, strategy, test, val"]


def test_the_quickstart_shows_cards_tables_pictures_and_a_notebook_progress_bar(quickstart):
    html = "".join(t for _, t in outputs(quickstart))
    assert html.count('src="data:image/png;base64,') >= 4  # 2 runs' and latest's matrices, the ablation's bar chart
    assert 'class="leader"' in html and "n.s." in html
    assert "<progress " in html and "predicting: " in html


def test_the_committed_quickstart_shows_what_it_prints_today(quickstart):
    committed = nbformat.read(NOTEBOOKS / "quickstart.ipynb", as_version=4)
    assert key_figures(committed), "the committed quickstart has no outputs: run python tests/test_notebooks.py"
    assert key_figures(committed) == key_figures(quickstart)


@pytest.mark.realdata
@pytest.mark.slow
def test_the_pbc_notebook_runs_on_the_real_images(shared_datasets, tmp_path):
    nb = execute("your-own-cells", tmp_path, {"BMBENCH_PBC": str(shared_datasets / "pbc")}, timeout=3600)
    assert "1600 images, 8 classes" in "".join(t for _, t in outputs(nb))
    html = "".join(t for _, t in outputs(nb))
    assert "pbc_cnn" in html and "Verdict" in html and 'class="leader"' in html


@pytest.mark.slow
def test_the_pbc_notebook_runs_on_a_small_tree_in_pbcs_layout(make_tree, tmp_path):
    """Every cell of the walk-through, where the real images are absent: 12 generated
    images in each of 4 of PBC's class folders."""
    classes = ("basophil", "eosinophil", "lymphocyte", "neutrophil")
    root = make_tree(tmp_path / "pbc", [f"PBC_dataset_normal_DIB/{c}/{c[:2].upper()}_{i}.jpg"
                                        for c in classes for i in range(12)], size=(48, 48))
    (tmp_path / "work").mkdir()
    nb = execute("your-own-cells", tmp_path / "work", {"BMBENCH_PBC": str(root)}, timeout=1800)
    html = "".join(t for _, t in outputs(nb))
    assert "pbc_cnn" in html and "Verdict" in html and "48 images, 4 classes" in html
    assert "kept epoch" in html  # the CNN's log says which epoch it kept


if __name__ == "__main__":  # refresh the committed quickstart's outputs
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        done = execute("quickstart", Path(tmp))
    for cell in done.cells:
        cell.get("metadata", {}).pop("execution", None)
    nbformat.write(done, NOTEBOOKS / "quickstart.ipynb")
    print(f"wrote {NOTEBOOKS / 'quickstart.ipynb'}", file=sys.stderr)
