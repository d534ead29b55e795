"""The store index: the same records as the folders, refreshed when a folder changes, and
never in the way (damaged, locked or read-only index: the folders are read)."""

import json
import multiprocessing
import os
import sqlite3


from bmbench.runs.index import FILE, StoreIndex, stamp
from bmbench.runs.store import list_runs


FACTS = {"family": "baseline", "split": {"strategy": "stratified"}, "dataset": {"kind": "pbc", "classes": ["a", "b"]}}


def make_store(root, n=4, evaluation=True):
    for i in range(n):
        folder = root / "runs" / f"2026010{i}T000000Z-r{i}-00000{i}"
        folder.mkdir(parents=True)
        (folder / "run.json").write_text(json.dumps({"id": folder.name, "name": f"r{i}", "split_fingerprint": "s", **FACTS}))
        (folder / "metrics.json").write_text(json.dumps({"macro_f1": i / 10, "ci": {"macro_f1": [0.0, 1.0]}}))
    if evaluation:
        ev = root / "runs" / "20260100T000000Z-r0-000000" / "evaluations" / "on-x"
        ev.mkdir(parents=True)
        (ev / "run.json").write_text(json.dumps({"id": "ev", "name": "r0", "split_fingerprint": "t", **FACTS}))
        (ev / "metrics.json").write_text("{}")
    return root


def indexed(root):
    with StoreIndex(root) as index:
        return list_runs(root, index)


def as_tuples(records):
    return [(r.id, r.path, r.info, r.metrics) for r in records]


def test_index_gives_the_folders_records_and_is_read_back(tmp_path):
    store = make_store(tmp_path)
    plain = list_runs(store)
    assert [r.id for r in plain][:2] == ["20260100T000000Z-r0-000000", "ev"]
    assert as_tuples(indexed(store)) == as_tuples(plain)
    assert (store / FILE).is_file()
    with sqlite3.connect(store / FILE) as db:
        assert db.execute("SELECT count(*) FROM records").fetchone()[0] == 5
        db.execute("UPDATE records SET metrics = ?", (__import__("marshal").dumps({"macro_f1": 0.99}),))
    # served from the index while the stamps hold (proof that the index is read) ...
    assert {r.metrics.get("macro_f1") for r in indexed(store)} == {0.99}


def test_changed_new_and_deleted_folders_refresh_the_index(tmp_path):
    store = make_store(tmp_path)
    indexed(store)
    runs = sorted((store / "runs").iterdir())
    (runs[1] / "metrics.json").write_text(json.dumps({"macro_f1": 0.123456}))
    make_store(tmp_path / "more", n=1, evaluation=False)
    os.rename(tmp_path / "more" / "runs" / os.listdir(tmp_path / "more" / "runs")[0], store / "runs" / "2027-new-1")
    (store / "runs" / "2027-new-1" / "run.json").write_text(json.dumps({"id": "new", "name": "new", "split_fingerprint": "s", **FACTS}))
    import shutil
    with StoreIndex(store) as index:
        index.remember(f"paired|x|{runs[2]}|{runs[0]}", "s", 1)
        index.remember(f"paired|x|{runs[0]}|{runs[3]}", "s", 2)
    shutil.rmtree(runs[2])
    got = indexed(store)
    with StoreIndex(store) as index:  # what named the deleted run went with it
        assert list(index.derived([f"paired|x|{runs[2]}|{runs[0]}", f"paired|x|{runs[0]}|{runs[3]}"])) == [
            f"paired|x|{runs[0]}|{runs[3]}"]
    assert as_tuples(got) == as_tuples(list_runs(store))
    assert got[2].metrics == {"macro_f1": 0.123456} and got[-1].id == "new"
    with sqlite3.connect(store / FILE) as db:
        assert sorted(r[0] for r in db.execute("SELECT folder FROM records")) == sorted(
            os.path.relpath(r.path, store / "runs") for r in got)


def test_damaged_folders_are_skipped_as_without_index(tmp_path, caplog):
    store = make_store(tmp_path, evaluation=False)
    bad = store / "runs" / "2026-bad-1"
    bad.mkdir()
    (bad / "run.json").write_text("{")
    assert as_tuples(indexed(store)) == as_tuples(list_runs(store))
    assert "skipping" in caplog.text and "2026-bad-1" in caplog.text


def test_a_damaged_index_file_is_rebuilt(tmp_path):
    store = make_store(tmp_path)
    (store / FILE).write_bytes(b"this is not a database" * 100)
    assert as_tuples(indexed(store)) == as_tuples(list_runs(store))
    with sqlite3.connect(store / FILE) as db:
        assert db.execute("SELECT count(*) FROM records").fetchone()[0] == 5


def test_a_locked_or_unwritable_index_falls_back_to_the_folders(tmp_path, monkeypatch):
    store = make_store(tmp_path)
    monkeypatch.setattr("bmbench.runs.index.LOCK_TIMEOUT", 0.05)
    holder = sqlite3.connect(store / FILE)
    holder.execute("CREATE TABLE x (a)")
    holder.execute("BEGIN EXCLUSIVE")  # another process holds the lock
    try:
        assert as_tuples(indexed(store)) == as_tuples(list_runs(store))
    finally:
        holder.rollback()
        holder.close()
    disabled = tmp_path / "disabled"
    make_store(disabled)
    with StoreIndex(disabled, enabled=False) as index:
        assert as_tuples(list_runs(disabled, index)) == as_tuples(list_runs(disabled))
    assert not (disabled / FILE).exists()
    assert not (tmp_path / "empty" / FILE).exists() and indexed(tmp_path / "empty") == []


def test_derived_values_need_the_same_stamp(tmp_path):
    store = make_store(tmp_path)
    f = next((store / "runs").iterdir()) / "metrics.json"
    with StoreIndex(store) as index:
        index.remember("k", stamp(f), {"p": 0.25, "n": 3})
        index.remember("none", stamp(f), None)
    with StoreIndex(store) as index:
        assert index.derived(["k", "none", "other"]) == {"k": (stamp(f), {"p": 0.25, "n": 3}), "none": (stamp(f), None)}
    f.write_text("{}   ")  # the file it came from changed: callers compare the stamps
    with StoreIndex(store) as index:
        assert index.derived(["k"])["k"][0] != stamp(f)
    assert stamp(f, f.with_name("missing")) == stamp(f) + ",-"


def _list_many(root, n):
    for _ in range(n):
        with StoreIndex(root) as index:
            records = list_runs(root, index)
            for i in range(20):
                index.remember(f"{os.getpid()}-{i}", "s", i)
        assert len(records) == 5


def test_concurrent_listings_share_the_index_safely(tmp_path):
    store = make_store(tmp_path)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_list_many, args=(store, 10)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    with sqlite3.connect(store / FILE) as db:
        assert db.execute("SELECT count(*) FROM derived").fetchone()[0] == 60
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert as_tuples(indexed(store)) == as_tuples(list_runs(store))
