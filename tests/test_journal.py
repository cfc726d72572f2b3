"""No finished request generated twice: a task killed mid-chunk leaves its finished requests in the
shard's journal; the restarted task takes them from there and asks the engine for the rest only.
Real processes and files, the synthetic engine (its prompts finish one after another)."""

from __future__ import annotations

import json
import signal
import subprocess

import pyarrow.parquet as pq

from magpie_hpc.engine import Completion, PromptResult
from magpie_hpc.journal import RequestJournal, read_journals
from magpie_hpc.stages import run_shard
from magpie_hpc.context import RunContext
from magpie_hpc.store import RunStore
from test_fault_tolerance import make_run, shard_cmd, wait_for


def _lines(folder) -> list[dict]:
    out = []
    for path in sorted(folder.glob("journal-*.jsonl")):
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def test_sigkill_mid_chunk_loses_only_the_requests_in_flight(tiny_models, tmp_path):
    run_dir = make_run(
        tiny_models,
        tmp_path,
        count=6,
        engine={"synthetic_tokens_per_second": 60.0},
        sharding={"instructions": 8, "responses": 6, "multi_responses": 6, "chunk_size": 6},
    )
    shard = RunStore(run_dir).shard("responses", "algebra", 0)
    proc = subprocess.Popen(shard_cmd(run_dir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: len(_lines(shard.path)) >= 2 or proc.poll() is not None, timeout=120)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert not list(shard.path.glob("part-*.parquet"))  # the one chunk was in flight: nothing committed
    journaled = {(r["chunk"], r["index"]): r["completions"][0][0] for r in _lines(shard.path)}
    assert 2 <= len(journaled) < 6

    done = run_shard(RunContext(run_dir), "responses", "algebra", 0)
    assert done["rows"] == 6 and done["journal_reused_requests"] == len(journaled)
    table = pq.read_table(shard.chunk_path(0)).to_pylist()
    assert [r["id"] for r in table] == [f"algebra-{i}" for i in range(6)]
    for (chunk, index), text in journaled.items():
        assert chunk == 0 and table[index]["responses"] == [text]  # taken from the journal, not regenerated
    assert not list(shard.path.glob("journal-*.jsonl"))  # the commit holds it all now


def test_journal_ignores_a_torn_tail_and_committed_chunks(tmp_path):
    journal = RequestJournal(tmp_path / "journal-001.jsonl")
    result = PromptResult(5, [Completion("a", 1, "stop"), Completion("b", 2, "length")])
    journal.append(0, 3, result)
    journal.append(1, 0, result)
    journal.close()
    with open(tmp_path / "journal-001.jsonl", "a") as fh:
        fh.write('{"chunk": 1, "index": 1, "prompt_tok')  # killed mid-write
    (tmp_path / "journal-002.jsonl").write_text(
        '{"chunk": 1, "index": 2, "prompt_tokens": 4, "completions": [["c", 1, "stop"]]}\n'
    )
    found = read_journals(tmp_path)
    assert found == {(0, 3): result, (1, 0): result, (1, 2): PromptResult(4, [Completion("c", 1, "stop")])}
    assert set(read_journals(tmp_path, from_chunk=1)) == {(1, 0), (1, 2)}


def test_usr2_mid_chunk_drains_then_requeues_without_regenerating(tiny_models, tmp_path):
    # The SLURM task under submitit (its local executor requeues as SLURM does): one chunk of 8
    # responses of the synthetic engine's R1-like spread (28 to 370 tokens at 40 tokens/s, up to
    # ~9 s each). USR2 gives a 25 s warning, so the drain may take 10 s (REQUEUE_MARGIN_SECONDS
    # kept back): it outlasts any one response, but not the chunk's.
    from magpie_hpc.slurm.task import REQUEUE_MARGIN_SECONDS
    from local_task import usr2_mid_chunk

    run_dir = make_run(
        tiny_models,
        tmp_path,
        count=8,
        engine={"synthetic_tokens_per_second": 40.0},
        sharding={"instructions": 8, "responses": 8, "multi_responses": 8, "chunk_size": 8},
        slurm={"gpu_stage": {"signal_delay_s": 25}},
    )
    drain = 25 - REQUEUE_MARGIN_SECONDS
    trial = usr2_mid_chunk(run_dir, tmp_path / "submitit", after=2)
    shard = RunStore(run_dir).shard("responses", "algebra", 0)
    # Stopped admitting at the signal, kept journaling while in flight, stopped at the drain's end.
    assert trial.committed_in_first == 0 and trial.signalled_after < len(trial.journaled) < 8, trial
    assert drain - 1 <= trial.first_attempt_seconds_after_signal <= drain + 10, trial
    stops = [(a["attempt"], a["signal"]) for a in trial.attempts if a["event"] == "interrupted"]
    assert stops == [(1, "USR2 (time limit)")] and [a["attempt"] for a in shard.counted_starts()] == [2]
    # Requeued by submitit (no resubmit): the second attempt is this job's, and took every
    # finished request from the journal. Finished requests regenerated: none.
    assert trial.done["attempt"] == 2 and trial.done["rows"] == 8
    assert trial.done["journal_reused_requests"] == len(trial.journaled)
    table = pq.read_table(shard.chunk_path(0)).to_pylist()
    assert [r["id"] for r in table] == [f"algebra-{i}" for i in range(8)]
    for (chunk, index), texts in trial.journaled.items():
        assert chunk == 0 and table[index]["responses"] == texts  # as journaled, not generated again
    assert not list(shard.path.glob("journal-*.jsonl"))
