import json
import os

import pytest

from bmbench.core.errors import StoreError
from bmbench.runs.store import RunWriter, list_runs, load_record, resolve_run, sweep_stale, tmp_name


def fake_run(results, name="r", split="s1", metric=0.5, kind="pbc"):
    with RunWriter(results, name) as w:
        (w.path / "run.json").write_text(json.dumps({"split_fingerprint": split, "name": name, "family": "baseline",
                                                     "split": {"strategy": "stratified"},
                                                     "dataset": {"kind": kind, "classes": ["a", "b"]}}))
        (w.path / "metrics.json").write_text(json.dumps({"macro_f1": metric}))
        return w.commit()


def test_commit_moves_a_complete_folder_into_place(tmp_path):
    final = fake_run(tmp_path)
    assert final.parent == tmp_path / "runs" and final.is_dir()
    assert not list((tmp_path / "runs").glob(".tmp-*"))
    assert load_record(final).metrics == {"macro_f1": 0.5}


def test_error_inside_the_writer_leaves_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with RunWriter(tmp_path, "x") as w:
            (w.path / "metrics.json").write_text("{}")
            raise KeyboardInterrupt
    assert list((tmp_path / "runs").iterdir()) == []


def test_ids_are_unique_even_in_the_same_second(tmp_path):
    ids = {fake_run(tmp_path).name for _ in range(20)}
    assert len(ids) == 20


def test_stale_temporary_folders_are_ignored_then_swept(tmp_path):
    fake_run(tmp_path)
    stale = tmp_path / "runs" / tmp_name("20200101T000000Z-x-abcdef").replace(f"@{os.getpid()}", "@999999999")
    stale.mkdir()
    (stale / "metrics.json").write_text("{}")
    assert len(list_runs(tmp_path)) == 1
    sweep_stale(tmp_path / "runs")
    assert not stale.exists()
    mine = tmp_path / "runs" / tmp_name("20200101T000000Z-x-abcdef")
    mine.mkdir()
    sweep_stale(tmp_path / "runs")
    assert mine.exists(), "a folder of a live process is never removed"


def test_damaged_and_foreign_folders_are_skipped_with_a_warning(tmp_path, caplog):
    good = fake_run(tmp_path)
    bad = fake_run(tmp_path, "bad")
    (bad / "metrics.json").write_text("{not json")
    (tmp_path / "runs" / "holiday-photos").mkdir()
    records = list_runs(tmp_path)
    assert [r.path for r in records] == [good]
    assert "damaged run record" in caplog.text and "not a bmbench run" in caplog.text


def test_resolve_run_by_latest_prefix_and_folder(tmp_path):
    a = fake_run(tmp_path, "alpha")
    b = fake_run(tmp_path, "beta")
    assert resolve_run(tmp_path, "latest") == max(a, b)
    assert resolve_run(tmp_path, b.name[:30]) == b
    assert resolve_run(tmp_path, str(a)) == a
    with pytest.raises(StoreError, match="no run matches"):
        resolve_run(tmp_path, "zzz")


def test_a_recipe_name_shared_by_runs_means_its_newest_and_dataset_narrows(tmp_path, caplog):
    old = fake_run(tmp_path, "quickstart", kind="matek_bm")
    new = fake_run(tmp_path, "quickstart", kind="pbc")
    other = fake_run(tmp_path, "quickstart_big", kind="pbc")
    assert resolve_run(tmp_path, "quickstart") == new
    assert "names 2 runs; using the newest" in caplog.text and old.name in caplog.text
    assert resolve_run(tmp_path, "quickstart", dataset="matek_bm") == old
    with pytest.raises(StoreError) as err:
        resolve_run(tmp_path, "quick", dataset_option="--dataset")  # ambiguous: every match listed
    assert all(p.name in str(err.value) for p in (old, new, other))
    assert "--dataset matek_bm|pbc" in str(err.value)
    with pytest.raises(StoreError, match="on data set kind 'bloodcells4'"):
        resolve_run(tmp_path, "quickstart", dataset="bloodcells4")
    assert resolve_run(tmp_path, "latest", dataset="matek_bm") == old
    assert resolve_run(tmp_path, "quickstart_big") == other


def test_hints_name_only_options_that_exist_and_tell_the_runs_apart(tmp_path, caplog):
    one = fake_run(tmp_path, "pbc_one", kind="pbc")
    two = fake_run(tmp_path, "pbc_two", kind="pbc")
    with pytest.raises(StoreError) as err:  # both on pbc: --dataset pbc would not help
        resolve_run(tmp_path, "pbc", dataset_option="--dataset")
    assert "--dataset" not in str(err.value)
    assert f"give the run id or its end (e.g. {two.name[-6:]})" in str(err.value)
    assert resolve_run(tmp_path, two.name[-6:]) == two and resolve_run(tmp_path, one.name[-6:]) == one
    fake_run(tmp_path, "pbc_three", kind="matek_bm")
    with pytest.raises(StoreError) as err:  # a caller without the option (predict) never names it
        resolve_run(tmp_path, "pbc")
    assert "--dataset" not in str(err.value)
    fake_run(tmp_path, "pbc_one", kind="pbc")
    caplog.clear()
    resolve_run(tmp_path, "pbc_one", dataset_option="--dataset")
    assert "to choose, give the run id" in caplog.text and "--dataset" not in caplog.text


def test_an_unknown_run_gets_a_did_you_mean(tmp_path):
    fake_run(tmp_path, "pbc_classical")
    with pytest.raises(StoreError, match=r"no run matches 'pbc_clasical' \(did you mean 'pbc_classical'\?\)"):
        resolve_run(tmp_path, "pbc_clasical")


def test_unwritable_results_folder_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError, match="cannot write the results folder"):
        with RunWriter(blocker, "x"):
            pass
