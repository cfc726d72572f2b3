"""The run directory's read model (store/view.py): submissions as shard keys and task ids, the
top-up's one owner, select's records, and shard progress with kept counts; and where submitit puts
a task's logs (slurm/logs.py)."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from magpie_hpc.errors import CorruptFileError
from magpie_hpc.pipeline import INSTRUCTIONS, MERGE_KEY, RESPONSES
from magpie_hpc.slurm.logs import task_paths, tasks_that_ran
from magpie_hpc.store import RunStore, RunView, kept_instructions


@pytest.fixture()
def view(tmp_path) -> RunView:
    return RunView(RunStore(tmp_path))


def _jobs(view: RunView, *jobs: tuple[str, str, list[int], str]) -> None:
    for stage, domain, shards, job_id in jobs:
        view.store.append_job({"stage": stage, "domain": domain, "shards": shards, "job_id": job_id})


def test_submissions_name_each_shards_task(view):
    _jobs(view, (RESPONSES, "algebra", [0, 1, 2], "12"), ("merge", "all", [0], "13"), (RESPONSES, "algebra", [1], "20"))
    first, merge, redo = view.submissions()
    assert first.keys == tuple((RESPONSES, "algebra", s) for s in (0, 1, 2)) and merge.keys == (MERGE_KEY,)
    assert first.task_id((RESPONSES, "algebra", 2)) == "12_2" and merge.task_id(MERGE_KEY) == "13"
    assert redo.task_id((RESPONSES, "algebra", 1)) == "20"  # a one-shard piece is a plain job
    assert view.submitted() == {*first.keys, MERGE_KEY}
    assert view.task_ids((RESPONSES, "algebra", 1)) == ["20", "12_1"]  # newest first
    assert tasks_that_ran(view.store, (RESPONSES, "algebra", 1), "12_1") == ["12_1", "20"]  # SLURM's own first
    assert tasks_that_ran(view.store, (RESPONSES, "algebra", 1), "99_0") == ["20", "12_1"]
    assert view.task_ids((RESPONSES, "geometry", 0)) == []


def test_task_logs_are_where_submitit_writes_them(view):
    paths = task_paths(view.store, "12_1")
    assert paths.stderr == view.store.logs / "12_1" / "12_1_0_log.err"
    assert task_paths(view.store, "13").stdout == view.store.logs / "13" / "13_0_log.out"


def test_the_topup_has_one_owner(view):
    assert view.topup("algebra", 2) == 0
    assert view.raise_topup("algebra", 2, 4) == 6
    assert view.raise_topup("algebra", 2, 1) == 8  # 6 + ceil(1.5)
    path = view.store.shard(INSTRUCTIONS, "algebra", 2).path / "topup.json"
    assert json.loads(path.read_text()) == {"extra": 8} and view.topup("algebra", 2) == 8
    assert view.store.shard(INSTRUCTIONS, "algebra", 2).stray_files() == []
    path.write_text('{"extra": "many"}')
    with pytest.raises(CorruptFileError, match="top-up of instructions algebra shard 2"):
        view.topup("algebra", 2)


def test_selects_records(view):
    assert view.duplicates("algebra") is None and view.decontamination("algebra") is None
    view.write_duplicates("algebra", {"candidates": 9, "exact_duplicates": 1, "near_duplicates_dropped": 2})
    view.write_decontamination("algebra", {"dropped": 1})
    assert view.duplicates("algebra")["near_duplicates_dropped"] == 2 and view.decontamination("algebra") == {
        "dropped": 1
    }
    assert view.duplicates_path("algebra").parent == view.store.shard("select", "algebra", 0).path.parent
    view.write_decontamination("algebra", None)  # no benchmark files now: no stale record
    assert view.decontamination("algebra") is None and not view.decontamination_path("algebra").exists()
    view.duplicates_path("algebra").write_text('{"candidates": true}')
    with pytest.raises(CorruptFileError, match="duplicate record of algebra"):
        view.duplicates("algebra")


def _instructions(texts: list[str | None], tokens: list[int]) -> pa.Table:
    return pa.table({"instruction": pa.array(texts, pa.string()), "output_tokens": tokens})


def test_shard_progress_counts_kept_instructions(view):
    table = _instructions(["a", None, "b", None], [5, 6, 7, 8])
    assert kept_instructions(table) == 2
    shard = view.store.shard(INSTRUCTIONS, "algebra", 0)
    shard.commit(0, table)
    shard.commit(1, _instructions(["c"], [1]))
    shard.log_attempt({"event": "start", "attempt": 1, "time": 10.0})
    found = view.shard(INSTRUCTIONS, "algebra", 0)
    assert (found.done, found.records, found.output_tokens) == (None, 3, 27)
    assert found.open_attempt and found.first_start == 10.0 and found.retries == 0
    assert view.shard(INSTRUCTIONS, "algebra", 0, progress=False).records == 0
    shard.mark_done({"rows": 5, "kept": 3, "output_tokens": 27, "finished": 20.0})
    found = view.shard(INSTRUCTIONS, "algebra", 0)
    assert (found.records, found.output_tokens, found.last_activity) == (3, 27, 20.0)
    assert view.merged() is None
    view.store.shard(*MERGE_KEY).mark_done({"stage": "merge"})
    assert view.merged() == {"stage": "merge"}
