"""The USR2 drain's deadline, on real signals in this process: it cuts an engine wait short, never a
commit in progress (the stop comes at the commit's end), and a wake-up that comes after the loop
is over is harmless. The whole path (submitit's requeue, the journal) is in test_journal.py."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from magpie_hpc.stages.interrupts import _DEADLINE_SIGNAL, TIME_LIMIT, Interrupted, Signals


def _usr2() -> None:
    os.kill(os.getpid(), signal.SIGUSR2)
    time.sleep(0.01)  # the handler runs in this (main) thread at its next instruction


def test_deadline_cuts_an_engine_wait_short():
    started = time.monotonic()
    with pytest.raises(Interrupted, match="drain ran out") as stop:
        with Signals("responses algebra shard 0", time_limit_drain=0.3) as signals:
            _usr2()
            assert signals.received == TIME_LIMIT
            time.sleep(30)  # an engine busy with its longest responses
    assert stop.value.time_limit and time.monotonic() - started < 5


def test_deadline_waits_for_a_commit_in_progress():
    committed = False
    with pytest.raises(Interrupted) as stop:
        with Signals("responses algebra shard 0", time_limit_drain=0.2) as signals:
            _usr2()
            with signals.protected():
                time.sleep(0.6)  # the deadline falls inside the commit
                committed = True
            pytest.fail("the overdue stop must come as the commit ends")
    assert committed and stop.value.time_limit


def test_sigterm_has_no_deadline_and_usr2_is_left_alone_without_a_drain():
    def submitits(signum, frame) -> None:
        pass

    previous = signal.signal(signal.SIGUSR2, submitits)
    try:
        with Signals("x") as signals:
            assert signal.getsignal(signal.SIGUSR2) is submitits  # left in place
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.5)
            assert signals.received == "SIGTERM" and not signals.time_limit
            with pytest.raises(Interrupted, match="SIGTERM after 2 chunks") as stop:
                signals.check(2)
            assert not stop.value.time_limit
    finally:
        signal.signal(signal.SIGUSR2, previous)


def test_a_wake_up_after_the_loop_is_harmless():
    with Signals("x", time_limit_drain=60) as signals:
        _usr2()
        signals.settle()  # the loop ended (the shard complete) before the drain ran out
        signal.pthread_kill(threading.main_thread().ident, _DEADLINE_SIGNAL)
        time.sleep(0.05)
    signal.pthread_kill(threading.main_thread().ident, _DEADLINE_SIGNAL)  # after exit: ignored, not fatal
    time.sleep(0.05)
    assert signals.time_limit and signal.getsignal(signal.SIGUSR2) != signals._handle  # the previous one again
