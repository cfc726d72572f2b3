"""One writer per shard, also where fcntl locks cannot be trusted (network filesystems).

Two layers: a `filelock` lock (cheap, exact on one host and on filesystems with working fcntl),
and an owner record `owner.json` (job id, host, pid, a random token, heartbeat time) that the
holder refreshes from a background thread. A task that finds a live owner backs off; an owner
whose heartbeat is older than `stale_seconds` is dead (lost node, SIGKILL) and is taken over.
Two owners are known dead at once, with no wait: one that marked its record released (SIGTERM or
USR2 came: it queues nothing new and at most commits its chunk in flight, atomically), and an
earlier run of this very SLURM task (same job and array task, lower restart count: SLURM runs one
instance of an array task at a time, so a requeued task finding its own killed predecessor's
record does not wait out `stale_seconds` holding its GPUs).
Two takers racing for a stale lock both write, wait, and re-read: the last writer wins. (Two
tasks starting a never-held shard at the same instant on two nodes is not guarded beyond fcntl;
the atomic chunk commits keep even that from duplicating a record.)
Correctness never rests on the lock alone: chunk commits are atomic renames to fixed names.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from pathlib import Path

from filelock import FileLock, Timeout

from .store import write_json_atomic
from .task_identity import slurm_task_identity

log = logging.getLogger("magpie_hpc")

# Locks this process holds, for the signal handlers (mark_all_released).
_HELD: set["ShardLock"] = set()


def mark_all_released() -> None:
    """First thing on SIGTERM/USR2: tell other tasks that this process's shards are free."""
    for lock in list(_HELD):
        lock.mark_released()


class ShardLock:
    def __init__(self, folder: Path, *, heartbeat_seconds: float, stale_seconds: float, enabled: bool = True):
        self.folder = folder
        self.owner_path = folder / "owner.json"
        self.heartbeat_seconds, self.stale_seconds, self.enabled = heartbeat_seconds, stale_seconds, enabled
        self.token = uuid.uuid4().hex
        self._flock = FileLock(str(folder / ".lock"))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = False
        self.released = False

    def read_owner(self) -> dict | None:
        try:
            return json.loads(self.owner_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None  # absent, or caught mid-replace on a filesystem without atomic rename visibility

    def owner_is_live(self, owner: dict | None) -> bool:
        if owner is None or owner.get("released") or self.is_predecessor(owner):
            return False
        return time.time() - owner.get("heartbeat", 0) <= self.stale_seconds

    @staticmethod
    def is_predecessor(owner: dict) -> bool:
        """An earlier run of the SLURM task this process is (so dead: SLURM runs one at a time)."""
        me = slurm_task_identity()
        if me.restart_count is None or owner.get("job_id") != me.job_id:
            return False
        if owner.get("array_task") != me.array_task:
            return False
        return int(owner.get("restart_count") or 0) < me.restart_count  # records of before the field: a first run

    def _write_owner(self, started: float) -> None:
        me = slurm_task_identity()
        write_json_atomic(
            self.owner_path,
            {
                "token": self.token,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "job_id": me.job_id,
                "array_task": me.array_task,
                "restart_count": me.restart_count,
                "started": started,
                "heartbeat": time.time(),
                **({"released": True} if self.released else {}),
            },
        )

    def mark_released(self) -> None:
        """Stopping (a signal came): the record says so at once, so the next task need not wait out
        stale_seconds. The lock stays ours until release(): the chunk in flight may still commit."""
        if not self.enabled or self.released:
            return
        self.released = True
        if (self.read_owner() or {}).get("token") == self.token:
            try:
                self._write_owner(self._started)
            except Exception as exc:  # noqa: BLE001 - inside a signal handler: never raise
                log.warning("owner record of %s not marked released: %s", self.owner_path, exc)

    def try_acquire(self) -> bool:
        if not self.enabled:
            return True
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            self._flock.acquire(timeout=0)
        except Timeout:
            return False
        owner = self.read_owner()
        if owner is not None and owner.get("token") != self.token and self.owner_is_live(owner):
            self._flock.release()  # a live owner on another node, where our fcntl lock means nothing
            return False
        started = self._started = time.time()
        self._write_owner(started)
        if owner is not None:
            # Taking over a dead owner: another node may be doing the same right now. Let its write
            # land, then compare; the last writer keeps the shard.
            time.sleep(min(1.0, self.heartbeat_seconds / 5))
            if (self.read_owner() or {}).get("token") != self.token:
                self._flock.release()
                return False
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, args=(started,), daemon=True, name="shard-heartbeat")
        self._thread.start()
        _HELD.add(self)
        return True

    def _beat(self, started: float) -> None:
        while not self._stop.wait(self.heartbeat_seconds):
            if (self.read_owner() or {}).get("token") != self.token:
                self.lost = True  # taken over: we were presumed dead; stop writing
                return
            try:
                self._write_owner(started)
            except Exception as exc:  # noqa: BLE001 - a full disk must not kill the heartbeat for good
                log.warning("heartbeat of %s not written: %s", self.owner_path, exc)

    def still_held(self) -> bool:
        if not self.enabled:
            return True
        return not self.lost and (self.read_owner() or {}).get("token") == self.token

    def release(self) -> None:
        if not self.enabled:
            return
        _HELD.discard(self)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if (self.read_owner() or {}).get("token") == self.token:
            self.owner_path.unlink(missing_ok=True)
        if self._flock.is_locked:
            self._flock.release()
