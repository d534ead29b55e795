"""``bmbench audit`` end to end: console output, report files, exit codes."""

import json

import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from bmbench.audit.report import FILES, PAIR_CSV_COLUMNS
from bmbench.cli import main

from .conftest import family_dataset


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def report(planted, tmp_path_factory):
    """The audit of the planted data set, run once through the CLI."""
    base = tmp_path_factory.mktemp("cli")
    mp = pytest.MonkeyPatch()
    mp.setenv("BMBENCH_CACHE", str(base / "cache"))
    mp.setenv("BMBENCH_RESULTS", str(base / "results"))
    root, pairs = planted
    res = invoke("audit", root, "--out", base / "out", "--sheet", 6)
    mp.undo()
    return res, base / "out", pairs


def test_console_report(report):
    res, _, _ = report
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert "folder at" in out and "48 images, 4 classes" in out  # 10 cells per class + 8 copies
    for line in ("exact duplicates: 2 group(s) of byte-identical files (4 images)",
                 "near duplicates: 6 pair(s) (3 by perceptual hash, 3 by colour + keypoints",
                 "clusters: 16 images in 8 cluster(s) of two or more (largest 2)",
                 "label noise: 2 duplicate pair(s) with different labels, e.g.",
                 "leak score: accuracy of a 1-nearest-neighbour on colour histograms",
                 "recipe split (stratified)", "same settings keeping near-duplicate clusters together",
                 "patients: the data set has no patient/group ids"):
        assert line in out, line
    assert out.count("Verdict: ") == 1
    assert "  part   images  groups  blast  lymphocyte  monocyte  neutrophil" in out
    wrote = [line for line in out.splitlines() if line.startswith("wrote ")]
    assert len(wrote) == 1 and "audit.txt" in wrote[0] and "audit.json" in wrote[0]


def test_pair_csv_lists_every_planted_pair_worst_first(report):
    _, out, pairs = report
    csv = pd.read_csv(out / FILES["pairs"])
    assert tuple(csv.columns) == PAIR_CSV_COLUMNS
    assert {tuple(sorted(p)) for p in zip(csv["path_a"], csv["path_b"])} == {tuple(sorted(p)) for p in pairs.values()}
    assert csv["label_conflict"].head(2).all() and not csv["label_conflict"].iloc[2:].any()
    assert set(csv["kind"]) == {"exact", "near"}
    assert (csv.loc[csv["kind"] == "exact", "distance"] == 0).all()
    assert csv["parts"].str.fullmatch(r"(train|val|test)/(train|val|test)").all()
    assert (csv["crosses_split"] == csv["parts"].map(lambda p: p.split("/")[0] != p.split("/")[1])).all()
    crossing = csv[csv["crosses_split"] & ~csv["label_conflict"]]
    if len(crossing):  # pairs across the split come right after the label conflicts
        assert csv.index[csv["crosses_split"] & ~csv["label_conflict"]].max() < 2 + len(crossing)
    clusters = pd.read_csv(out / FILES["clusters"])
    assert list(clusters.columns) == ["cluster", "size", "path", "label", "part"]
    assert len(clusters) == 16 and (clusters["size"] == 2).all()


def test_contact_sheet_png_and_html(report):
    _, out, _ = report
    with Image.open(out / FILES["png"]) as im:
        assert im.format == "PNG" and im.width >= 900 and im.height >= 600
        px = im.convert("RGB").getpixel((im.width // 2, im.height - 2))
        assert px == (255, 255, 255)
    page = (out / FILES["html"]).read_text()
    assert page.count("<img src='data:image/jpeg;base64,") == 12  # 6 pairs x 2
    assert "LABEL CONFLICT" in page and "Verdict:" in page and FILES["png"] in page
    assert "<script" not in page
    data = json.loads((out / FILES["json"]).read_text())
    assert data["duplicates"]["label_conflicts"] == 2 and data["duplicates"]["exact_groups"] == 2
    assert data["verdict"]["level"] in ("ok", "caution", "leak")
    assert (out / FILES["text"]).read_text().startswith("bmbench audit: folder")


def test_one_pair_sheet_is_wide_enough_for_its_title(planted, audit_env):
    from PIL import ImageDraw

    from bmbench.audit.report import _font
    root, _ = planted
    assert invoke("audit", root, "--out", audit_env / "one", "--sheet", 1, "-q").exit_code == 0
    with Image.open(audit_env / "one" / FILES["png"]) as im:
        title = "bmbench audit: folder - 1 worst of 6 duplicate pairs"
        assert im.width > ImageDraw.Draw(im).textlength(title, font=_font(20)) + 16


def test_json_quiet_and_default_folder(planted, audit_env):
    root, _ = planted
    res = invoke("audit", root, "--format", "json", "--sheet", 0)
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["dataset"]["n_images"] == 48 and data["split"]["strategy"] == "stratified"
    assert data["duplicates"]["near_pairs"] == 6 and len(data["leak"]["scores"]) == 2
    folder = audit_env / "results" / "audits" / f"folder-{data['split']['fingerprint'][:8]}"
    assert data["files"]["pairs"] == str(folder / FILES["pairs"]) and (folder / FILES["png"]).is_file()
    quiet = invoke("audit", root, "-q", "--out", audit_env / "q")
    assert quiet.exit_code == 0
    assert quiet.stdout.startswith("Verdict: ") and quiet.stdout.count("\n") == 1


def test_recipe_source_audits_the_split_a_run_uses(planted, audit_env):
    from bmbench.data.splits import recipe_split
    from bmbench.data import load_dataset
    from bmbench.config.recipe import load_recipe

    root, _ = planted
    recipe = audit_env / "r.yaml"
    recipe.write_text(f"name: planted\ndataset: {{kind: folder, root: {root}}}\n"
                      "model: {family: baseline}\nsplit: {folds: 3, seed: 4}\n")
    res = invoke("audit", recipe, "--format", "json", "--out", audit_env / "o")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    r = load_recipe(recipe)
    split = recipe_split(load_dataset(r.dataset), r)
    assert data["name"] == "planted" and data["split"]["folds"] == 3
    assert data["split"]["fingerprint"] == split.fingerprint
    assert (audit_env / "results" / "splits" / f"{split.fingerprint}.json").is_file()
    csv = pd.read_csv(audit_env / "o" / FILES["pairs"])
    assert csv["parts"].str.fullmatch(r"test@fold\d/test@fold\d").all()
    grouped = invoke("audit", recipe, "--format", "json", "--sheet", 0, "--set", "split.group_by=near_duplicates")
    data = json.loads(grouped.stdout)
    assert data["split"]["settings"]["group_by"] == "near_duplicates"
    assert data["duplicates"]["pairs_across_split"] == 0 and data["duplicates"]["test_images_with_copies"] == 0


def test_fail_on_leak_exit_status(tmp_path_factory, audit_env):
    base = tmp_path_factory.mktemp("leaky-cli")
    root = family_dataset(base / "d", base, leaky=True, families=24)
    res = invoke("audit", root, "-q", "--fail-on-leak", "--set", "split.folds=4", "--out", audit_env / "l")
    assert res.exit_code == 1 and res.stdout.startswith("Verdict: LEAK")
    assert invoke("audit", root, "-q", "--set", "split.folds=4", "--out", audit_env / "l").exit_code == 0


@pytest.mark.parametrize("args, message", [
    (["{tmp}/nowhere"], "nowhere: no such recipe file or data folder"),
    (["{tmp}/missing.yaml"], "missing.yaml: recipe file not found"),
    (["{root}", "--kind", "pcb"], "did you mean 'pbc'"),
    (["{root}", "--option", "group_pattern"], "expected KEY=VALUE"),
    (["{root}", "--set", "split.group_by=patients"], "split.group_by"),
    (["{root}", "--out", "{tmp}/afile"], "is a file"),
    (["{root}", "--jobs", "0"], "--jobs 0: give a number"),
])
def test_bad_input_is_one_error_line(planted, audit_env, args, message):
    root, _ = planted
    (audit_env / "afile").write_text("x")
    args = [a.format(tmp=audit_env, root=root) for a in args]
    res = invoke("audit", *args)
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1 and message in lines[0], res.stderr


@pytest.mark.parametrize("out", ["{tmp}/afile/audit", "{tmp}/afile"])
def test_an_unwritable_out_is_refused_before_the_audit_runs(planted, audit_env, monkeypatch, out):
    import bmbench.audit

    root, _ = planted
    (audit_env / "afile").write_text("x")
    monkeypatch.setattr(bmbench.audit, "audit_source", lambda *a, **k: pytest.fail("audited before checking --out"))
    res = invoke("audit", root, "--out", out.format(tmp=audit_env))
    assert res.exit_code == 2 and res.stderr.count("Error:") == 1, res.output
