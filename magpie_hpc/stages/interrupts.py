"""What stops a shard attempt from outside: signals (preemption, scancel, the time limit) and a hung
engine. The chunk loop drains on a signal instead of dying on it: nothing new is queued, what is in
flight keeps finishing and is journaled (journal.py), and committed chunks stay atomic.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ..errors import MagpieError

log = logging.getLogger("magpie_hpc")

TIME_LIMIT = "USR2 (time limit)"  # as attempts.jsonl records the stop (slurm/task.py logs it so too)

# Wakes the main thread when a USR2 drain runs out of time. A real-time signal of its own, not
# SIGALRM (pytest-timeout's) nor USR2 (submitit's, restored when the loop ends): a wake-up that
# races the end of the loop must find a handler that ignores it, never one that acts on it.
_DEADLINE_SIGNAL = signal.SIGRTMIN + 3


class Interrupted(MagpieError):
    """A signal stopped the attempt at a safe point (between chunks, or at the end of a USR2
    drain); `time_limit` when the stop began with the time-limit warning, which the SLURM task
    answers by requeueing itself."""

    exit_code = 143

    def __init__(self, message: str, *, time_limit: bool = False):
        super().__init__(message)
        self.time_limit = time_limit


class Signals:
    """SIGTERM (preemption, scancel): nothing new is queued; what is in flight keeps finishing until
    the stream drains or SLURM's KillWait runs out. With `time_limit_drain` (seconds), USR2 does the
    same but for that long only, then stops the attempt wherever it is (an engine may be busy for
    minutes more with its longest responses), leaving the rest of the signal's warning time to
    the requeue. Without it USR2 is not handled here.

    A signal handler cannot drain: while it runs, the main thread's generation loop does not. So
    the handlers set flags that the chunk loop reads, and the drain deadline raises `Interrupted`
    into the main thread, deferred to the end of any `protected()` block (a commit in progress)."""

    def __init__(
        self, where: str, on_signal: Callable[[str], None] | None = None, time_limit_drain: float | None = None
    ) -> None:
        self.where, self.on_signal, self.time_limit_drain = where, on_signal, time_limit_drain
        self.received: str | None = None
        self.time_limit = False
        self._previous: dict[int, object] = {}
        self._timer: threading.Timer | None = None
        self._settled = False  # the loop is over: a late deadline changes nothing
        self._protected = 0
        self._overdue = False

    def __enter__(self) -> "Signals":
        if threading.current_thread() is threading.main_thread():
            handlers = {signal.SIGTERM: self._handle}
            if self.time_limit_drain is not None:
                handlers |= {signal.SIGUSR2: self._handle, _DEADLINE_SIGNAL: self._deadline}
            self._previous = {signum: signal.signal(signum, handler) for signum, handler in handlers.items()}
        return self

    def _handle(self, signum, frame) -> None:
        first = self.received is None
        name = TIME_LIMIT if signum == signal.SIGUSR2 else signal.Signals(signum).name
        self.received = self.received or name
        if signum == signal.SIGUSR2 and not self.time_limit:
            self.time_limit = True
            drain = max(self.time_limit_drain or 0.0, 0.0)
            log.warning(
                "%s received: no new requests; finishing those in flight for %.0fs, then requeueing", name, drain
            )
            self._timer = threading.Timer(drain, self._wake)
            self._timer.daemon = True
            self._timer.start()
        else:
            log.warning("%s received: stopping after the chunk in flight", name)
        if first and self.on_signal is not None:
            self.on_signal(name)

    def _wake(self) -> None:
        if not self._settled:
            signal.pthread_kill(threading.main_thread().ident, _DEADLINE_SIGNAL)

    def _deadline(self, signum, frame) -> None:
        if self._settled:
            return
        if self._protected:
            self._overdue = True
            return
        self._stop_now()

    def _stop_now(self):
        self._settled = True
        raise Interrupted(
            f"{self.where}: {self.received}, the {self.time_limit_drain:g}s drain ran out; the rest resumes on requeue",
            time_limit=self.time_limit,
        )

    @contextmanager
    def protected(self) -> Iterator[None]:
        """A drain deadline that falls inside waits for the block's end (a commit is never cut)."""
        self._protected += 1
        try:
            yield
        finally:
            self._protected -= 1
        if self._overdue and not self._protected and not self._settled:
            self._stop_now()

    def check(self, chunks: int) -> None:
        """At a chunk boundary: stop if a signal came."""
        if self.received:
            self._settled = True  # stopping anyway: a drain deadline must not cut the clean-up
            raise Interrupted(
                f"{self.where}: {self.received} after {chunks} chunks; the rest resumes on requeue or resubmit",
                time_limit=self.time_limit,
            )

    def settle(self) -> None:
        """The loop is over (the shard is complete, or stopping anyway): no deadline may cut it now."""
        self._settled = True
        if self._timer is not None:
            self._timer.cancel()

    def __exit__(self, *exc) -> None:
        self.settle()
        for signum, previous in self._previous.items():
            if signum == _DEADLINE_SIGNAL:
                signal.signal(signum, signal.SIG_IGN)  # its wake-up may still be on its way: not fatal
            elif previous is not None:  # None: not installed from Python, so not restorable
                signal.signal(signum, previous)


class Watchdog:
    """Exits the process when nothing is committed for `stall_seconds`: a hung engine blocks inside
    native code, where no exception can reach it, and would otherwise burn the task's wall time."""

    def __init__(self, stall_seconds: float, on_stall: Callable[[float], None]) -> None:
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

    def __enter__(self) -> "Watchdog":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
