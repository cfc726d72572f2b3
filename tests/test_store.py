"""The shard store on a real filesystem: what a torn chunk, a gap and stale temp files leave, and
that nothing built on a chunk that cannot be trusted is kept."""

from __future__ import annotations

import os
import time

import pyarrow as pa
import pytest

from magpie_hpc.errors import MagpieError
from magpie_hpc.store import ShardStore, counted_starts


def _table(first: int, n: int = 2) -> pa.Table:
    return pa.table({"id": [f"a-{i}" for i in range(first, first + n)]})


@pytest.fixture()
def store(tmp_path) -> ShardStore:
    store = ShardStore(tmp_path / "shard-00000")
    for index in range(4):
        store.commit(index, _table(2 * index))
    return store


def _ids(tables: list[pa.Table]) -> list[str]:
    return [i for t in tables for i in t["id"].to_pylist()]


def _aside(store: ShardStore) -> list[str]:
    return sorted(p.name.split(".corrupt-")[0] for p in store.path.glob("*.corrupt-*"))


def test_committed_chunks_read_back_in_order(store):
    assert store.committed_indices() == [0, 1, 2, 3]
    assert _ids(store.read_committed()) == [f"a-{i}" for i in range(8)]
    assert store.read_all()["id"].to_pylist() == [f"a-{i}" for i in range(8)]
    assert _aside(store) == []


def test_torn_chunk_sets_it_and_every_later_chunk_aside(store):
    torn = store.chunk_path(1)
    torn.write_bytes(torn.read_bytes()[:30])
    assert _ids(store.read_committed()) == ["a-0", "a-1"]
    # Chunks 2 and 3 read fine but were committed after the torn one: they are redone too.
    assert store.committed_indices() == [0]
    assert _aside(store) == ["part-00001.parquet", "part-00002.parquet", "part-00003.parquet"]
    # Redone, the shard reads back whole again.
    for index in (1, 2, 3):
        store.commit(index, _table(2 * index))
    assert _ids(store.read_committed()) == [f"a-{i}" for i in range(8)]


def test_gap_sets_the_chunks_after_it_aside(store):
    store.chunk_path(1).unlink()  # a chunk lost by hand or by a broken copy
    assert _ids(store.read_committed()) == ["a-0", "a-1"]
    assert store.committed_indices() == [0]
    assert _aside(store) == ["part-00002.parquet", "part-00003.parquet"]


def test_first_chunk_torn_leaves_nothing(store):
    store.chunk_path(0).write_bytes(b"PAR1 not really")
    assert store.read_committed() == []
    assert store.committed_indices() == []
    assert len(_aside(store)) == 4


def test_read_all_of_an_empty_shard_is_an_error(tmp_path):
    store = ShardStore(tmp_path / "none")
    assert store.committed_indices() == [] and store.read_committed() == []
    with pytest.raises(MagpieError, match="no committed chunks"):
        store.read_all()


def test_stale_temps_go_fresh_ones_and_chunks_stay(store):
    old, fresh = store.path / ".part-00004.dead.tmp", store.path / ".part-00004.live.tmp"
    old.write_bytes(b"x")
    fresh.write_bytes(b"y")
    past = time.time() - 7200
    os.utime(old, (past, past))
    store.remove_stale_temps()
    assert not old.exists() and fresh.exists()
    assert store.committed_indices() == [0, 1, 2, 3]


def test_commit_leaves_no_temp_and_replaces_whole(store):
    store.commit(3, _table(100, 3))
    assert not list(store.path.glob(".part-*"))
    assert _ids(store.read_committed())[-3:] == ["a-100", "a-101", "a-102"]


def test_done_marker_and_attempt_log(tmp_path):
    store = ShardStore(tmp_path / "s")
    assert store.done() is None and store.attempts() == []
    store.log_interruption("SIGTERM")  # no start yet: nothing to attach it to
    assert store.attempts() == []
    for attempt in (1, 2, 3):
        store.log_attempt({"event": "start", "attempt": attempt})
    store.log_attempt({"event": "end", "attempt": 1, "error": "EngineFault: boom"})
    store.log_attempt({"event": "end", "attempt": 2, "error": "Interrupted: SIGTERM after 1 chunks"})
    store.log_interruption("USR2 (time limit)")  # attaches to the newest start, 3
    assert [(a["event"], a["attempt"]) for a in store.attempts()] == [
        ("start", 1),
        ("start", 2),
        ("start", 3),
        ("end", 1),
        ("end", 2),
        ("interrupted", 3),
    ]
    assert [a["attempt"] for a in store.counted_starts()] == [1]
    assert counted_starts(store.attempts()) == store.counted_starts()
    store.mark_done({"rows": 8})
    assert store.done() == {"rows": 8}


def test_run_store_layout_manifest_and_jobs(tmp_path):
    from magpie_hpc.store import RunStore

    run = RunStore(tmp_path / "run")
    assert not run.is_run_dir()
    with pytest.raises(MagpieError, match="not a magpie-hpc run directory"):
        run.read_manifest()
    run.run_dir.mkdir()
    manifest = {"run_name": "r", "config": {}, "model": {}, "reward_model_path": "/m"}
    run.write_manifest(manifest)
    assert run.manifest_path == tmp_path / "run" / "run.json" and run.is_run_dir()
    assert run.read_manifest() == manifest
    assert run.read_jobs() == []
    run.append_job({"stage": "select", "domain": "algebra", "shards": [0], "job_id": "7"})
    run.append_job({"stage": "merge", "domain": "all", "shards": [0], "job_id": "8"})
    assert run.jobs_path == tmp_path / "run" / "jobs.jsonl"
    assert [j["job_id"] for j in run.read_jobs()] == ["7", "8"]
    assert run.logs == tmp_path / "run" / "logs"
    shard = run.shard("responses", "algebra", 7)
    assert shard.path == tmp_path / "run" / "work" / "responses" / "algebra" / "shard-00007"
    assert shard.chunk_path(3).name == "part-00003.parquet" and shard.done_path.name == "DONE.json"


def test_json_files_stay_readable_utf8(tmp_path):
    from magpie_hpc.store import write_json_atomic

    # run.json holds the chat template's text ("<｜User｜>"): written as is, for a person to read.
    write_json_atomic(tmp_path / "m.json", {"template": "<｜User｜> é"})
    text = (tmp_path / "m.json").read_text(encoding="utf-8")
    assert "<｜User｜> é" in text and text.endswith("}\n")
    assert not list(tmp_path.glob(".*.tmp"))
