"""Run one stage on one shard: the shared machinery every stage goes through.

`run_shard(run_dir, stage, domain, shard)` is the unit the executors schedule. It is idempotent
(a done shard returns at once), resumes after the last committed chunk, holds the shard's lock
while it works, loads its model only if there is work left, and writes the done marker last.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import closing, nullcontext
from pathlib import Path

import pyarrow as pa

from ..context import RunContext
from ..engine import EngineCache
from ..engine.factory import TaskRef, build_generator, build_scorer
from ..errors import MagpieError
from ..journal import RequestJournal, read_journals, remove_journals
from ..pipeline import stage as stage_spec
from ..plan import derive_seed, stage_shards
from ..generation_settings import stage_settings
from ..shardlock import ShardLock, restart_count
from ..store import counted_starts
from .base import ShardWork

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


def _log_progress(stage, domain, shard, shard_range, committed, table, chunk_seconds) -> None:
    """One line per chunk in the job log: rows and tokens per second, and the shard's ETA."""
    rows = sum(t.num_rows for t in committed)
    rate = table.num_rows / chunk_seconds if chunk_seconds > 0 else 0.0
    tokens_rate = _tokens(table) / chunk_seconds if chunk_seconds > 0 else 0.0
    eta = ""
    spec = stage_spec(stage)
    if spec.gpu and spec.upstream is not None and rate > 0:  # a shard of problems (instructions: candidates)
        eta = f", ETA {max(shard_range.size - rows, 0) / rate:.0f}s"
    log.info("%s %s shard %d: chunk %d committed (%d rows, %.1fs, %.2f rows/s, %.0f tokens/s%s)", stage, domain,
             shard, len(committed) - 1, table.num_rows, chunk_seconds, rate, tokens_rate, eta)


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
        return int(sum(t for fs, ts in zip(table["finish_reasons"].to_pylist(), tokens)
                       for f, t in zip(fs, ts) if f == "repetition"))
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
        summary["kept"] = rows - table["instruction"].null_count
        summary["drop_reasons"] = dict(Counter(r for r in table["drop_reason"].to_pylist() if r))
    if "id" in names:
        ids = table["id"].to_pylist()
        summary["first_id"], summary["last_id"] = ids[0], ids[-1]
    return summary


class ShardFailed(MagpieError):
    """The shard reached its attempt cap; it is reported, not retried."""

    exit_code = 4


class Interrupted(MagpieError):
    """SIGTERM (preemption, scancel): stopped at a safe point between chunks."""

    exit_code = 143


class _Signals:
    """SIGTERM sets a flag the chunk loop checks; the chunk in flight is the most that is lost."""

    def __init__(self, on_signal=None) -> None:
        self.received: str | None = None
        self.on_signal = on_signal
        self._previous = None

    def __enter__(self) -> "_Signals":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        first = self.received is None
        self.received = signal.Signals(signum).name
        log.warning("%s received: stopping after the chunk in flight", self.received)
        if first and self.on_signal is not None:
            self.on_signal(self.received)

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


class _Watchdog:
    """Exits the process when nothing is committed for `stall_seconds`: a hung engine blocks inside
    native code, where no exception can reach it, and would otherwise burn the task's wall time."""

    def __init__(self, stall_seconds: float, on_stall) -> None:
        self.stall_seconds, self.on_stall = stall_seconds, on_stall
        self.last = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True, name="shard-watchdog")

    def progress(self) -> None:
        self.last = time.monotonic()

    def _watch(self) -> None:
        while not self._stop.wait(min(5.0, self.stall_seconds / 4)):
            idle = time.monotonic() - self.last
            if idle > self.stall_seconds:
                self.on_stall(idle)
                os._exit(75)

    def __enter__(self) -> "_Watchdog":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()


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


def run_shard(run_dir: Path | str, stage: str, domain: str, shard: int, *, engines: EngineCache | None = None,
              ctx: RunContext | None = None) -> dict:
    """Bring one shard to done; returns its done marker. Safe to call any number of times, from any
    number of processes at once."""
    ctx = ctx or RunContext(Path(run_dir))
    ft = ctx.cfg.fault_tolerance
    store = ctx.store.shard(stage, domain, shard)
    if (done := store.done()) is not None:
        return done
    ranges = stage_shards(ctx.cfg, stage, domain)
    if not 0 <= shard < len(ranges):
        raise MagpieError(f"{stage} {domain}: no shard {shard} (this run has {len(ranges)})")
    lock = ShardLock(store.path, heartbeat_seconds=ft.heartbeat_seconds, stale_seconds=ft.stale_seconds,
                     enabled=ft.lock)
    if (done := _acquire(lock, store, ft)) is not None:
        return done
    try:
        if (done := store.done()) is not None:
            return done
        history = store.attempts()
        failed = counted_starts(history)
        if len(failed) >= ft.max_attempts:
            errors = [a["error"] for a in history if a.get("error")]
            raise ShardFailed(f"{stage} {domain} shard {shard} failed {len(failed)} attempts (cap "
                              f"fault_tolerance.max_attempts={ft.max_attempts}; preemptions and time limits "
                              f"do not count); last error: {errors[-1] if errors else 'none recorded (killed)'}")
        attempt = sum(1 for a in history if a.get("event") == "start") + 1
        identity = {"attempt": attempt, "host": socket.gethostname(), "pid": os.getpid(),
                    "job_id": os.environ.get("SLURM_JOB_ID"), "array_job_id": os.environ.get("SLURM_ARRAY_JOB_ID"),
                    "array_task": os.environ.get("SLURM_ARRAY_TASK_ID"), "restart_count": restart_count()}
        store.log_attempt({"event": "start", "time": time.time(), **identity})

        def on_stall(idle: float) -> None:
            msg = (f"{stage} {domain} shard {shard}: no chunk committed for {idle:.0f}s "
                   f"(fault_tolerance.stall_seconds={ft.stall_seconds:g}); the engine looks hung, exiting")
            log.error(msg)
            store.log_attempt({"event": "end", "time": time.time(), "attempt": attempt, "error": msg})

        try:
            def on_signal(name: str) -> None:
                lock.mark_released()  # before anything else: the requeued task must not wait for us
                store.log_interruption(name, attempt)

            with _Signals(on_signal) as signals, _Watchdog(ft.stall_seconds, on_stall) as watchdog:
                summary = _run_chunks(ctx, stage, domain, shard, ranges[shard], store, lock, engines,
                                      attempt, signals, watchdog)
        except BaseException as exc:
            store.log_attempt({"event": "end", "time": time.time(), "attempt": attempt,
                               "error": f"{type(exc).__name__}: {exc}"[:2000]})
            raise
        store.log_attempt({"event": "end", "time": time.time(), "attempt": attempt, "done": True})
        return summary
    finally:
        lock.release()


def _interrupted_check(signals: _Signals, stage, domain, shard, committed) -> None:
    if signals.received:
        raise Interrupted(f"{stage} {domain} shard {shard}: {signals.received} after {len(committed)} chunks; "
                          "the rest resumes on requeue or resubmit")


def _computed_chunks(work: ShardWork, committed: list[pa.Table], open_engine, signals: _Signals,
                     check, journal=None) -> Iterator[tuple[pa.Table, float]]:
    """(table, seconds) of each remaining chunk, in order, for the caller to commit before asking
    for the next. Work whose chunks are all known ahead streams them through the engine, the next
    chunk queued before the current one is done, so a GPU never drains at a chunk boundary nor
    waits on a commit; other work goes one chunk at a time, each decided from what is committed."""
    planned = work.planned_chunks(committed)
    if planned is None:
        while (chunk := work.next_chunk(committed)) is not None:
            check()
            engine = open_engine()
            started = time.monotonic()
            yield work.run_chunk(engine, chunk, len(committed), committed), time.monotonic() - started
        return
    if not planned:
        return
    check()
    engine, first = open_engine(), len(committed)

    def requests():
        for offset, chunk in enumerate(planned):
            if signals.received:
                return  # after SIGTERM queue nothing new
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
                check()
            # with a journal, after a signal nothing new is queued but what is in flight keeps
            # finishing (journaled, and committed chunk by chunk) until the stream drains or SLURM kills
    check()  # a stream cut short by a signal ends here, not in a done marker


def _run_chunks(ctx, stage, domain, shard, shard_range, store, lock, engines, attempt, signals, watchdog) -> dict:
    started = time.monotonic()
    store.remove_stale_temps()
    committed = store.read_committed()
    task = TaskRef(stage, domain, shard, attempt)
    work: ShardWork = stage_spec(stage).work_class()(ctx, domain, shard_range)
    engine, load_seconds, resumed_at = None, 0.0, len(committed)

    def open_engine():
        nonlocal engine, load_seconds
        if engine is None and work.engine_kind is not None:
            engine = _open_engine(work, ctx, task, resumed_at, engines)
            load_seconds = engine.load_seconds
            watchdog.progress()
        return engine

    check = lambda: _interrupted_check(signals, stage, domain, shard, committed)  # noqa: E731
    settings = stage_settings(ctx.cfg, ctx.model.name, stage, domain)  # recorded with each chunk
    journal = None
    if work.spec.journaled:  # finished requests of the open chunks, from earlier attempts
        work.journaled = read_journals(store.path, from_chunk=len(committed))
        journal = RequestJournal(store.path / f"journal-{attempt:03d}.jsonl")
    # closing: whatever ends the loop also ends the engine stream (what it queued is aborted)
    with closing(journal) if journal is not None else nullcontext(), \
            closing(_computed_chunks(work, committed, open_engine, signals, check, journal)) as chunks:
        for table, seconds in chunks:
            if not lock.still_held():
                raise MagpieError(f"{stage} {domain} shard {shard}: lost the shard's lock to another task "
                                  "(this one was presumed dead); leaving the shard to it")
            store.commit(len(committed), table, settings=settings)
            committed.append(table)
            watchdog.progress()
            _log_progress(stage, domain, shard, shard_range, committed, table, seconds)
    if work.next_chunk(committed) is not None:  # never mark done what is not
        raise MagpieError(f"{stage} {domain} shard {shard}: chunks ended before the shard was complete")
    summary = {
        "stage": stage, "domain": domain, "shard": shard, **_summary(stage, committed),
        "resumed_at_chunk": resumed_at, "attempt": attempt, "model_load_seconds": round(load_seconds, 3),
        "gpu": _gpu_name(),
        "seconds": round(time.monotonic() - started, 3), "host": socket.gethostname(),
        "job_id": os.environ.get("SLURM_JOB_ID"), "array_job_id": os.environ.get("SLURM_ARRAY_JOB_ID"),
        "array_task": os.environ.get("SLURM_ARRAY_TASK_ID"), "finished": time.time(),
    }
    if journal is not None:
        summary["journal_reused_requests"] = work.reused
    if engine is not None and engines is None:
        engine.close()
    store.mark_done(summary)
    remove_journals(store.path)  # the commits hold everything now; the merge never reads journals
    return summary
