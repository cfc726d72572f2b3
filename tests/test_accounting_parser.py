"""The sacct/squeue parser of slurm/accounting.py on literal rows in the formats SLURM 22.05 prints
(`sacct -X -n -P --duplicates -o JobID,State,...`, `squeue -h -r -o %i|%T|%N|%r`): array specs,
records of whole arrays, plain jobs, requeues and resubmissions, mapped to the run's shards."""

from __future__ import annotations

import pytest

from magpie_hpc.slurm import states
from magpie_hpc.slurm.accounting import SACCT_FIELDS, _indices, _latest, _records, _resolve, _state

T0 = "2026-01-01T10:00:00"
RESP = [("responses", "algebra", 0), ("responses", "algebra", 1), ("responses", "algebra", 2)]
MERGE = [("merge", "all", 0)]
PIECES = {"667": RESP, "668": MERGE, "670": [("responses", "algebra", 1)]}


def _sacct(*lines: str) -> list[dict]:
    """Rows as accounting._sacct makes them from `sacct -P` output."""
    return [dict(zip(SACCT_FIELDS, line.split("|"))) for line in lines]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("0-1%2", [0, 1]), ("0-3%1", [0, 1, 2, 3]), ("1,4-5", [1, 4, 5]), ("7", [7]), ("2-2", [2]), ("", [])],
)
def test_indices_of_array_specs(spec, expected):
    assert _indices(spec) == expected


def test_resolve_maps_slurm_ids_to_the_runs_shards():
    assert _resolve("667_[0-1%2]", PIECES) == [("667_0", RESP[0]), ("667_1", RESP[1])]
    assert _resolve("667_[1,2-9%4]", PIECES) == [("667_1", RESP[1]), ("667_2", RESP[2])]  # past the array: none
    assert _resolve("667_2", PIECES) == [("667_2", RESP[2])]
    assert _resolve("667_3", PIECES) == [] and _resolve("667_x", PIECES) == []
    assert _resolve("668", PIECES) == [("668", MERGE[0])]  # a plain job: one shard
    assert _resolve("670", PIECES) == [("670", RESP[1])]  # submitit's one-shard piece of an array
    assert _resolve("667", PIECES) == [(f"667_{i}", k) for i, k in enumerate(RESP)]  # an array that never split
    assert _resolve("999_0", PIECES) == [] and _resolve("999", PIECES) == []  # another run's job


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("CANCELLED by 0", "CANCELLED"),
        ("CANCELLED by 1000", "CANCELLED"),
        ("COMPLETED", "COMPLETED"),
        ("RUNNING+", "RUNNING"),
        ("", states.UNKNOWN),
        ("  ", states.UNKNOWN),
    ],
)
def test_state_of_raw_sacct_states(raw, expected):
    assert _state(raw) == expected


def test_records_read_every_field_of_a_sacct_row():
    rows = _sacct(
        f"667_0|COMPLETED|0:0|{T0}|2026-01-01T10:05:00|00:05:00|300|node1|None|billing=1,cpu=1,gres/gpu=2,node=1",
        "668|PENDING|0:0|Unknown|Unknown|00:00:00|0|None assigned|Dependency|",
    )
    done, merge = _records(rows, PIECES)
    assert (done.key, done.job_id, done.state, done.exit_code) == (RESP[0], "667_0", "COMPLETED", "0:0")
    assert (done.elapsed_seconds, done.gpus, done.node, done.reason) == (300, 2, "node1", "")
    assert (done.start, done.end) == (T0, "2026-01-01T10:05:00")
    assert (merge.key, merge.state, merge.node, merge.reason, merge.gpus) == (MERGE[0], "PENDING", "", "Dependency", 0)


def test_an_array_record_stands_only_for_tasks_without_their_own():
    rows = _sacct(
        f"667_0|COMPLETED|0:0|{T0}|{T0}|00:00:20|20|node1|None|cpu=1,gres/gpu=1,node=1",
        "667_[0-2%2]|CANCELLED by 0|0:0|Unknown|Unknown|00:00:00|0|None assigned|Dependency|",
    )
    got = {(r.job_id, r.state) for r in _records(rows, PIECES)}
    assert got == {("667_0", "COMPLETED"), ("667_1", "CANCELLED"), ("667_2", "CANCELLED")}


def test_squeue_rows_map_like_sacct_rows():
    line = "667_1|RUNNING|node2|None"
    job, state, node, reason = line.split("|")
    (rec,) = _records([{"JobID": job, "State": state, "NodeList": node, "Reason": reason}], PIECES)
    assert (rec.key, rec.state, rec.node, rec.reason, rec.elapsed_seconds) == (RESP[1], "RUNNING", "node2", "", 0)


def test_latest_keeps_a_requeued_tasks_history():
    rows = _sacct(
        f"667_1|PREEMPTED|0:0|{T0}|{T0}|00:00:10|10|node2|None|cpu=1,gres/gpu=1,node=1",
        "667_1|PENDING|0:0|Unknown|Unknown|00:00:00|0|None assigned|BeginTime|",
    )
    st = _latest(_records(rows, PIECES))[RESP[1]]
    assert (st.state, st.history, st.job_history) == ("PENDING", ["PREEMPTED", "PENDING"], ["PREEMPTED", "PENDING"])
    assert st.active and st.requeued and not st.running and st.preemptions == 1


def test_latest_prefers_the_newest_submission_in_any_order():
    failed = f"667_1|FAILED|1:0|{T0}|{T0}|00:00:20|20|node2|None|cpu=1,gres/gpu=1,node=1"
    redone = f"670|RUNNING|0:0|{T0}|Unknown|00:00:05|5|node1|None|cpu=1,gres/gpu=1,node=1"
    for order in ((failed, redone), (redone, failed)):
        st = _latest(_records(_sacct(*order), PIECES))[RESP[1]]
        assert (st.job_id, st.state, st.array_job_id) == ("670", "RUNNING", "670")
        assert sorted(st.history) == ["FAILED", "RUNNING"] and st.job_history == ["RUNNING"]
        assert st.running and not st.requeued and st.preemptions == 0


def test_state_classes_agree_with_each_other():
    assert states.RUNNING <= states.ACTIVE and states.PREEMPTED <= states.REQUEUE <= states.CUT_SHORT | states.ACTIVE
    assert states.PREEMPTED <= states.CUT_SHORT and not states.UNTOLD & states.ACTIVE
    assert states.end_reason("FAILED", "Dependency") == "NonZeroExitCode"  # sacct keeps the last queue reason
    assert states.end_reason("PENDING", "Dependency") == "Dependency"
    assert states.end_reason("TIMEOUT", "None") == "TimeLimit" and states.end_reason("ENDED", "None") is None
    assert states.end_reason("FAILED", "launch failed requeued held") == "launch failed requeued held"
    assert states.end_reason(None, "x") is None
