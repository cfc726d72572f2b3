"""A shard run as its SLURM array task runs it (slurm/task.py's ShardTask, under submitit), on this
machine: submitit's local executor, whose job environment answers USR2 through the same handler as
on SLURM (`checkpoint`, then requeue: there, the controller starting the task again). No SLURM, no
stand-in: the time-limit stop and its requeue are submitit's own. Shared by tests and benchmarks."""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path


def journal_texts(path: Path) -> dict[tuple[int, int], list[str]]:
    """(chunk, index) -> completion texts, of each whole line of one attempt's journal."""
    found: dict[tuple[int, int], list[str]] = {}
    try:
        text = path.read_text()
    except FileNotFoundError:
        return found
    for line in text.splitlines():
        try:
            r = json.loads(line)
            found[(r["chunk"], r["index"])] = [c[0] for c in r["completions"]]
        except (ValueError, KeyError, TypeError):
            pass  # a torn tail
    return found


@dataclass
class TimeLimitTrial:
    signalled_after: int  # requests in the first attempt's journal when USR2 was sent
    journaled: dict[tuple[int, int], list[str]]  # in it when that attempt ended (its chunks not committed)
    committed_in_first: int  # chunks the first attempt committed
    first_attempt_seconds_after_signal: float  # USR2 to the first attempt's end record
    done: dict  # the done marker, written by the requeued run
    attempts: list[dict] = field(default_factory=list)


def usr2_mid_chunk(
    run_dir: Path,
    folder: Path,
    *,
    after: int,
    stage: str = "responses",
    domain: str = "algebra",
    shard: int = 0,
    timeout: float = 600.0,
) -> TimeLimitTrial:
    """Submit the shard through submitit's local executor, send its task USR2 once `after` requests
    are in the journal, and wait for the requeued task to finish the shard."""
    import submitit

    from magpie_hpc.slurm.task import ShardTask
    from magpie_hpc.store import RunStore

    store = RunStore(run_dir).shard(stage, domain, shard)
    executor = submitit.LocalExecutor(folder=folder)
    executor.update_parameters(timeout_min=30)  # its own USR2 (30 s before that) never comes first
    job = executor.submit(ShardTask(), str(run_dir), stage, domain, shard)
    journal = store.path / "journal-001.jsonl"
    deadline = time.monotonic() + timeout

    def attempt(n: int, event: str) -> dict | None:
        return next((a for a in store.attempts() if a.get("event") == event and a.get("attempt") == n), None)

    while (start := attempt(1, "start")) is None or len(journal_texts(journal)) < after:
        assert time.monotonic() < deadline and not job.done(), "the task never reached its chunk loop"
        time.sleep(0.02)
    signalled_after = len(journal_texts(journal))
    sent = time.time()
    os.kill(start["pid"], signal.SIGUSR2)
    # The first attempt's journal, read as soon as it has ended: the requeued run deletes it once done.
    while (end := attempt(1, "end")) is None:
        assert time.monotonic() < deadline, "the first attempt never ended"
        time.sleep(0.01)
    journaled, committed = journal_texts(journal), len(store.committed_indices())
    while not job.done():
        assert time.monotonic() < deadline, "the requeued task never finished"
        time.sleep(0.2)
    done = job.result()
    return TimeLimitTrial(signalled_after, journaled, committed, end["time"] - sent, done, store.attempts())
