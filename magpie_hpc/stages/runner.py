"""Run one stage on one shard: the shared machinery every stage goes through.

`run_shard(ctx, stage, domain, shard)` is the unit the executors schedule. It is idempotent
(a done shard returns at once), resumes after the last committed chunk, holds the shard's lock
while it works, loads its model only if there is work left, and writes the done marker last.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing, nullcontext
from dataclasses import dataclass

import pyarrow as pa

from ..context import RunContext
from ..engine import EngineCache
from ..engine.factory import TaskRef, build_generator, build_scorer
from ..errors import MagpieError
from ..journal import RequestJournal, read_journals, remove_journals
from ..pipeline import stage as stage_spec
from ..plan import ShardRange, derive_seed, stage_shards
from ..generation_settings import stage_settings
from ..shardlock import ShardLock
from ..store import ShardStore, counted_starts, kept_instructions
from ..task_identity import slurm_task_identity
from .base import ShardWork
from .interrupts import Signals, Watchdog

log = logging.getLogger("magpie_hpc")


def _open_engine(work: ShardWork, ctx: RunContext, task: TaskRef, resume_chunk: int, engines: EngineCache | None):
    if work.engine_kind is None:
        return None
    if work.engine_kind == "scorer":
        build = lambda: build_scorer(ctx.cfg, ctx.reward_path, task=task)  # noqa: E731
        return engines.scorer(build) if engines else build()
    # The engine seed includes the resume point, so a resumed task does not replay the samples of
    # the chunks it already committed (engine-level seeding is all the CPU backend allows).
    seed = derive_seed(ctx.cfg.seed, "engine", task.stage, task.domain, task.shard, resume_chunk)
    build = lambda: build_generator(ctx.cfg, ctx.model, ctx.prompts, seed=seed, task=task)  # noqa: E731
    return engines.generator(build) if engines else build()


def _tokens(table: pa.Table) -> int:
    if "output_tokens" not in table.column_names:
        return 0
    return int(sum(sum(v) if isinstance(v, list) else v for v in table["output_tokens"].to_pylist()))


def _log_progress(
    stage: str, where: str, shard_range: ShardRange, committed: list[pa.Table], table: pa.Table, chunk_seconds: float
) -> None:
    """One line per chunk in the job log: rows and tokens per second, and the shard's ETA."""
    rows = sum(t.num_rows for t in committed)
    rate = table.num_rows / chunk_seconds if chunk_seconds > 0 else 0.0
    tokens_rate = _tokens(table) / chunk_seconds if chunk_seconds > 0 else 0.0
    eta = ""
    spec = stage_spec(stage)
    if spec.gpu and spec.upstream is not None and rate > 0:  # a shard of problems (instructions: candidates)
        eta = f", ETA {max(shard_range.size - rows, 0) / rate:.0f}s"
    log.info(
        "%s: chunk %d committed (%d rows, %.1fs, %.2f rows/s, %.0f tokens/s%s)",
        where,
        len(committed) - 1,
        table.num_rows,
        chunk_seconds,
        rate,
        tokens_rate,
        eta,
    )


def _gpu_name() -> str | None:
    import sys

    torch = sys.modules.get("torch")  # only if an engine already imported it: no import cost here
    if torch is not None and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return None


def _loop_tokens(table: pa.Table) -> int:
    """Output tokens of the completions that ended with finish reason "repetition"."""
    tokens = table["output_tokens"].to_pylist()
    if "finish_reasons" in table.column_names:
        return int(
            sum(
                t
                for fs, ts in zip(table["finish_reasons"].to_pylist(), tokens)
                for f, t in zip(fs, ts)
                if f == "repetition"
            )
        )
    return int(sum(t for f, t in zip(table["finish_reason"].to_pylist(), tokens) if f == "repetition"))


def _summary(stage: str, committed: list[pa.Table]) -> dict:
    rows = sum(t.num_rows for t in committed)
    summary: dict = {"rows": rows, "chunks": len(committed)}
    if not committed:
        return summary
    table = pa.concat_tables(committed, promote_options="default")
    names = set(table.column_names)
    if "output_tokens" in names:
        summary["output_tokens"] = _tokens(table)
    if "prompt_tokens" in names:
        summary["prompt_tokens"] = int(sum(table["prompt_tokens"].to_pylist()))
    if "finish_reasons" in names:
        summary["finish_reasons"] = dict(Counter(f for fs in table["finish_reasons"].to_pylist() for f in fs))
    elif "finish_reason" in names:
        summary["finish_reasons"] = dict(Counter(table["finish_reason"].to_pylist()))
    if "output_tokens" in names and ("finish_reasons" in names or "finish_reason" in names):
        # What the engine's loop stop let loops generate; run_summary turns it into tokens saved.
        summary["repetition_output_tokens"] = _loop_tokens(table)
    if "drop_reason" in names:
        summary["kept"] = kept_instructions(table)
        summary["drop_reasons"] = dict(Counter(r for r in table["drop_reason"].to_pylist() if r))
    if "id" in names:
        ids = table["id"].to_pylist()
        summary["first_id"], summary["last_id"] = ids[0], ids[-1]
    return summary


class ShardFailed(MagpieError):
    """The shard reached its attempt cap; it is reported, not retried."""

    exit_code = 4


@dataclass
class _Attempt:
    """One attempt at one shard: what its chunk loop works with."""

    ctx: RunContext
    stage: str
    domain: str
    shard_range: ShardRange
    store: ShardStore
    lock: ShardLock
    engines: EngineCache | None
    number: int
    signals: Signals
    watchdog: Watchdog

    @property
    def where(self) -> str:
        return f"{self.stage} {self.domain} shard {self.shard_range.shard}"


def _acquire(lock: ShardLock, store, ft) -> dict | None:
    """Hold the shard, or (when another live task holds it) wait until that task finishes it.
    Returns the done marker if the shard got done meanwhile, else None with the lock held."""
    while not lock.try_acquire():
        if not ft.wait_for_holder:
            raise MagpieError(f"{store.path} is being worked on by another task; not touching it")
        if (done := store.done()) is not None:
            return done
        time.sleep(max(0.5, ft.heartbeat_seconds / 2))
    return None


def run_shard(
    ctx: RunContext,
    stage: str,
    domain: str,
    shard: int,
    *,
    engines: EngineCache | None = None,
    time_limit_drain: float | None = None,
) -> dict:
    """Bring one shard to done; returns its done marker. Safe to call any number of times, from any
    number of processes at once. `time_limit_drain`: seconds a USR2 (the time-limit warning) leaves
    to finish the requests in flight before `Interrupted(time_limit=True)` stops the attempt, for
    the caller to requeue (slurm/task.py); None leaves USR2 to whoever handles it already."""
    ft = ctx.cfg.fault_tolerance
    store = ctx.store.shard(stage, domain, shard)
    if (done := store.done()) is not None:
        return done
    ranges = stage_shards(ctx.cfg, stage, domain)
    if not 0 <= shard < len(ranges):
        raise MagpieError(f"{stage} {domain}: no shard {shard} (this run has {len(ranges)})")
    lock = ShardLock(
        store.path, heartbeat_seconds=ft.heartbeat_seconds, stale_seconds=ft.stale_seconds, enabled=ft.lock
    )
    if (done := _acquire(lock, store, ft)) is not None:
        return done
    try:
        if (done := store.done()) is not None:
            return done
        history = store.attempts()
        failed = counted_starts(history)
        if len(failed) >= ft.max_attempts:
            errors = [a["error"] for a in history if a.get("error")]
            raise ShardFailed(
                f"{stage} {domain} shard {shard} failed {len(failed)} attempts (cap "
                f"fault_tolerance.max_attempts={ft.max_attempts}; preemptions and time limits "
                f"do not count); last error: {errors[-1] if errors else 'none recorded (killed)'}"
            )
        attempt = sum(1 for a in history if a.get("event") == "start") + 1
        identity = {
            "attempt": attempt,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            **slurm_task_identity().record(),
        }

        def on_stall(idle: float) -> None:
            msg = (
                f"{stage} {domain} shard {shard}: no chunk committed for {idle:.0f}s "
                f"(fault_tolerance.stall_seconds={ft.stall_seconds:g}); the engine looks hung, exiting"
            )
            log.error(msg)
            store.log_attempt({"event": "end", "time": time.time(), "attempt": attempt, "error": msg})

        def on_signal(name: str) -> None:
            lock.mark_released()  # before anything else: the requeued task must not wait for us
            store.log_interruption(name, attempt)

        try:
            with (
                Signals(f"{stage} {domain} shard {shard}", on_signal, time_limit_drain) as signals,
                Watchdog(ft.stall_seconds, on_stall) as watchdog,
            ):
                # logged once the handlers are in: a signal that a start on record may draw is caught
                store.log_attempt({"event": "start", "time": time.time(), **identity})
                summary = _run_chunks(
                    _Attempt(ctx, stage, domain, ranges[shard], store, lock, engines, attempt, signals, watchdog)
                )
        except BaseException as exc:
            store.log_attempt(
                {
                    "event": "end",
                    "time": time.time(),
                    "attempt": attempt,
                    "error": f"{type(exc).__name__}: {exc}"[:2000],
                }
            )
            raise
        store.log_attempt({"event": "end", "time": time.time(), "attempt": attempt, "done": True})
        return summary
    finally:
        lock.release()


def _computed_chunks(
    work: ShardWork,
    committed: list[pa.Table],
    open_engine: Callable[[], object],
    signals: Signals,
    journal: RequestJournal | None = None,
) -> Iterator[tuple[pa.Table, float]]:
    """(table, seconds) of each remaining chunk, in order, for the caller to commit before asking
    for the next. Work whose chunks are all known ahead streams them through the engine, the next
    chunk queued before the current one is done, so a GPU never drains at a chunk boundary nor
    waits on a commit; other work goes one chunk at a time, each decided from what is committed."""
    planned = work.planned_chunks(committed)
    if planned is None:
        while (chunk := work.next_chunk(committed)) is not None:
            signals.check(len(committed))
            engine = open_engine()
            started = time.monotonic()
            yield work.run_chunk(engine, chunk, len(committed), committed), time.monotonic() - started
        return
    if not planned:
        return
    signals.check(len(committed))
    engine, first = open_engine(), len(committed)

    def requests():
        for offset, chunk in enumerate(planned):
            if signals.received:
                return  # after a signal queue nothing new
            yield work.request(chunk, first + offset)

    on_finished = None
    if journal is not None:

        def on_finished(ordinal: int, position: int, result) -> None:
            if signals.received:
                journal.sync_seconds = 0.0  # a SIGKILL may follow at any moment: every request to disk at once
            chunk = first + ordinal
            journal.append(chunk, work.request_positions[chunk][position], result)

    started = time.monotonic()
    stream = engine.generate_stream(requests(), on_finished) if on_finished else engine.generate_stream(requests())
    with closing(stream):
        for offset, results in enumerate(stream):
            yield work.to_table(planned[offset], first + offset, results), time.monotonic() - started
            started = time.monotonic()
            if journal is None:
                signals.check(len(committed))
            # with a journal, after a signal nothing new is queued but what is in flight keeps
            # finishing (journaled, and committed chunk by chunk) until the stream drains, a USR2
            # drain runs out, or SLURM kills
    if work.next_chunk(committed) is not None:
        signals.check(len(committed))  # a stream cut short by a signal ends here, not in a done marker
    # (a drain that finished the shard's last chunk leaves it done: nothing to requeue for)


def _run_chunks(a: _Attempt) -> dict:
    started = time.monotonic()
    ctx, store = a.ctx, a.store
    store.remove_stale_temps()
    committed = store.read_committed()
    task = TaskRef(a.stage, a.domain, a.shard_range.shard, a.number)
    work: ShardWork = stage_spec(a.stage).work_class()(ctx, a.domain, a.shard_range)
    engine, load_seconds, resumed_at = None, 0.0, len(committed)

    def open_engine():
        nonlocal engine, load_seconds
        if engine is None and work.engine_kind is not None:
            engine = _open_engine(work, ctx, task, resumed_at, a.engines)
            load_seconds = engine.load_seconds
            a.watchdog.progress()
        return engine

    settings = stage_settings(ctx.cfg, ctx.model.name, a.stage, a.domain)  # recorded with each chunk
    journal = None
    # Instruction chunks are short: a lost one costs little. They keep no journal, so a stop (SIGTERM,
    # or a USR2 drain that runs out) loses the one in flight, to be generated again.
    if work.spec.journaled:  # finished requests of the open chunks, from earlier attempts
        work.journaled = read_journals(store.path, from_chunk=len(committed))
        journal = RequestJournal(store.path / f"journal-{a.number:03d}.jsonl")
    # closing: whatever ends the loop also ends the engine stream (what it queued is aborted)
    with (
        closing(journal) if journal is not None else nullcontext(),
        closing(_computed_chunks(work, committed, open_engine, a.signals, journal)) as chunks,
    ):
        for table, seconds in chunks:
            with a.signals.protected():  # a USR2 drain that runs out now stops after the commit
                if not a.lock.still_held():
                    raise MagpieError(
                        f"{a.where}: lost the shard's lock to another task (this one was presumed "
                        "dead); leaving the shard to it"
                    )
                store.commit(len(committed), table, settings=settings)
                committed.append(table)
                a.watchdog.progress()
                _log_progress(a.stage, a.where, a.shard_range, committed, table, seconds)
        a.signals.settle()
    if work.next_chunk(committed) is not None:  # never mark done what is not
        raise MagpieError(f"{a.where}: chunks ended before the shard was complete")
    me = slurm_task_identity()
    summary = {
        "stage": a.stage,
        "domain": a.domain,
        "shard": a.shard_range.shard,
        **_summary(a.stage, committed),
        "resumed_at_chunk": resumed_at,
        "attempt": a.number,
        "model_load_seconds": round(load_seconds, 3),
        "gpu": _gpu_name(),
        "seconds": round(time.monotonic() - started, 3),
        "host": socket.gethostname(),
        "job_id": me.job_id,
        "array_job_id": me.array_job_id,
        "array_task": me.array_task,
        "finished": time.time(),
    }
    if journal is not None:
        summary["journal_reused_requests"] = work.reused
    if engine is not None and a.engines is None:
        engine.close()
    store.mark_done(summary)
    remove_journals(store.path)  # the commits hold everything now; the merge never reads journals
    return summary
