"""The shard lock's owner record: live owners are left alone, dead ones taken over, a race for a
dead owner has one winner, and a holder that was taken over notices and stops."""

from __future__ import annotations

import json
import time

import pytest

from magpie_hpc import shardlock
from magpie_hpc.shardlock import ShardLock


def _lock(folder, **kw) -> ShardLock:
    return ShardLock(
        folder, heartbeat_seconds=kw.pop("heartbeat_seconds", 0.2), stale_seconds=kw.pop("stale_seconds", 1.0), **kw
    )


def _write_owner(folder, token: str, age: float) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "owner.json").write_text(
        json.dumps({"token": token, "host": "elsewhere", "pid": 1, "heartbeat": time.time() - age})
    )


def test_acquire_release_and_a_second_taker_on_this_host(tmp_path):
    first, second = _lock(tmp_path / "s"), _lock(tmp_path / "s")
    assert first.try_acquire()
    try:
        assert first.read_owner()["token"] == first.token and first.still_held()
        assert not second.try_acquire()  # fcntl says no on the same host
        assert first.read_owner()["token"] == first.token
    finally:
        first.release()
    assert first.read_owner() is None
    assert second.try_acquire()
    second.release()


@pytest.mark.parametrize("token", ["other-node", "", "0"])
def test_live_owner_elsewhere_is_left_alone(tmp_path, token):
    folder = tmp_path / "s"
    _write_owner(folder, token, age=0.0)
    lock = _lock(folder)
    assert not lock.try_acquire()
    assert lock.read_owner()["token"] == token  # not overwritten
    assert not lock._flock.is_locked  # and the fcntl lock given back
    lock.release()
    assert lock.read_owner()["token"] == token  # release never removes another's record


def test_dead_owner_is_taken_over(tmp_path):
    folder = tmp_path / "s"
    _write_owner(folder, "dead", age=5.0)
    lock = _lock(folder)
    assert lock.try_acquire()
    try:
        assert lock.read_owner()["token"] == lock.token and lock.still_held()
        beat = lock.read_owner()["heartbeat"]
        time.sleep(0.5)
        assert lock.read_owner()["heartbeat"] > beat  # the heartbeat thread refreshes it
    finally:
        lock.release()


def test_takeover_race_the_last_writer_wins(tmp_path, monkeypatch):
    """Two nodes find the same dead owner: both write, wait, re-read; the one whose record was
    overwritten backs off (and gives its fcntl lock back)."""
    folder = tmp_path / "s"
    _write_owner(folder, "dead", age=5.0)
    ours, theirs = _lock(folder), _lock(folder)
    real_sleep = time.sleep

    def other_node_writes_meanwhile(seconds):
        theirs._write_owner(time.time())  # the other taker's write lands during our wait
        real_sleep(seconds)

    monkeypatch.setattr(shardlock.time, "sleep", other_node_writes_meanwhile)
    assert not ours.try_acquire()
    monkeypatch.setattr(shardlock.time, "sleep", real_sleep)
    assert ours.read_owner()["token"] == theirs.token
    assert not ours._flock.is_locked and not ours.still_held()
    ours.release()
    assert ours.read_owner()["token"] == theirs.token


def test_holder_taken_over_notices_and_stops_beating(tmp_path):
    folder = tmp_path / "s"
    lock = _lock(folder, heartbeat_seconds=0.1)
    assert lock.try_acquire()
    try:
        _write_owner(folder, "new-owner", age=0.0)  # presumed dead, taken over by another node
        deadline = time.monotonic() + 5
        while not lock.lost:
            assert time.monotonic() < deadline, "the heartbeat never noticed the takeover"
            time.sleep(0.05)
        assert not lock.still_held()
        time.sleep(0.3)
        assert lock.read_owner()["token"] == "new-owner"  # it stopped writing its own record
    finally:
        lock.release()
    assert lock.read_owner()["token"] == "new-owner"


@pytest.mark.parametrize("text", ["", "{not json"])
def test_unreadable_owner_record_counts_as_none(tmp_path, text):
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "owner.json").write_text(text)
    lock = _lock(folder)
    assert lock.read_owner() is None and not lock.owner_is_live(None)
    assert lock.try_acquire()
    lock.release()


def test_disabled_lock_always_holds(tmp_path):
    lock = _lock(tmp_path / "s", enabled=False)
    assert lock.try_acquire() and lock.still_held()
    lock.release()
    assert not (tmp_path / "s").exists()


def test_liveness_is_the_heartbeat_age(tmp_path):
    lock = _lock(tmp_path / "s", stale_seconds=10.0)
    now = time.time()
    assert lock.owner_is_live({"heartbeat": now}) and lock.owner_is_live({"heartbeat": now - 9.5})
    assert not lock.owner_is_live({"heartbeat": now - 10.5})
    assert not lock.owner_is_live({"heartbeat": 1.0})  # a heartbeat from 1970 is long dead
    assert not lock.owner_is_live({"token": "no heartbeat"})


def test_still_held_compares_tokens_exactly(tmp_path):
    folder = tmp_path / "s"
    lock = _lock(folder, heartbeat_seconds=30.0)  # no beat during the test: only the record counts
    assert lock.try_acquire()
    try:
        for other in ("", "0", lock.token[:-1], lock.token + "0"):
            _write_owner(folder, other, age=0.0)
            assert not lock.still_held(), other
        lock._write_owner(time.time())
        assert lock.still_held()
    finally:
        lock.release()
