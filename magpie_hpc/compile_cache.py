"""Warm start: one compile cache per (model, vLLM version, GPU type), shared by a run's tasks.

vLLM compiles the model with torch.compile (Inductor, and Triton kernels on a GPU) while the engine
loads, then captures CUDA graphs. It keeps what it compiled under VLLM_CACHE_ROOT/torch_compile_cache/
<hash of its config, environment, traced source and compiler>/ (vllm/compilation/backends.py,
decorators.py), and Inductor and Triton keep theirs under TORCHINDUCTOR_CACHE_DIR and TRITON_CACHE_DIR.
A later load with the same settings reads the compiled artifacts back instead of compiling: vLLM writes
its AOT artifact and Inductor its standalone artifacts to a temporary name and renames them, so once
written a cache is safe to read from any number of processes. What is not safe is many processes
compiling into one cache at once (vLLM's `vllm_compile_cache.py` index is written in place), and
hundreds of tasks each compiling privately wastes the compile time of every one of them.

So the first task of a run builds the cache under a lock that works across nodes (`BuildLock`), and
marks it complete (`COMPLETE`) once its engine loaded; the others wait for that marker, then load warm.
A task that waits past `wait_seconds` loads eager instead (no compile, no cache: slower decoding, but it
starts), and a builder that died (stale heartbeat, or marked released by SIGTERM/USR2) is taken over.
vLLM's own hash still separates settings within one cache folder; the lock only prevents a stampede.

GPU-only: Triton kernels (TRITON_CACHE_DIR) and CUDA-graph capture (never cached: captured at every
load, after the compiled kernels are read back). On the CPU build Inductor generates C++ instead, and
keeps its precompiled header under $TMPDIR/torchinductor_$USER whatever TORCHINDUCTOR_CACHE_DIR says
(torch/_inductor/codecache.py); CPU runs load eager anyway (engine/vllm_engine.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from .shardlock import ShardLock
from .store import write_json_atomic

log = logging.getLogger("magpie_hpc")

# Set by the SLURM task (slurm/task.py) to RUN_DIR/cache/compile; unset, vLLM's default places are used.
ROOT_ENV = "MAGPIE_COMPILE_CACHE"
CACHE_ENV = ("VLLM_CACHE_ROOT", "TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")
COMPLETE = "COMPLETE.json"


@dataclass(frozen=True)
class CacheKey:
    """What a compiled artifact depends on that vLLM's own hash may not see: the weights' revision
    (vLLM hashes the model's config, not its files) and the machine that compiled it."""

    model: str
    revision: str | None
    vllm: str | None
    device: str

    def folder_name(self) -> str:
        readable = "-".join(
            re.sub(r"[^A-Za-z0-9.-]+", "_", part)[:40] for part in (self.model, self.vllm or "none", self.device)
        )
        digest = hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]
        return f"{readable}-{digest}"


def device_name() -> str:
    """The GPU type ("NVIDIA H100 80GB HBM3"), or "cpu". Through vLLM's platform, which asks NVML on
    CUDA: torch.cuda.get_device_name would initialise CUDA in this process before vLLM starts its
    workers."""
    from vllm.platforms import current_platform

    if current_platform.is_cpu():
        return "cpu"
    try:
        return current_platform.get_device_name(0)
    except Exception:  # noqa: BLE001 - a platform without a name query still has a kind
        return str(current_platform.device_name)


def cache_key(model_name: str, model_path: str, *, device: str | None = None) -> CacheKey:
    from .engine_version import installed_vllm
    from .models import model_label
    from .provenance import model_revision

    found = installed_vllm()
    return CacheKey(
        model=model_label(model_name),
        revision=model_revision(model_path)["revision"],
        vllm=f"{found[0]}=={found[1]}" if found else None,
        device=device or device_name(),
    )


def point_caches(folder: Path) -> None:
    """Every compile cache of this process into `folder` (vLLM's, Inductor's, Triton's)."""
    for name, sub in zip(CACHE_ENV, ("vllm", "inductor", "triton")):
        os.environ[name] = str(folder / sub)


class BuildLock(ShardLock):
    """The shard lock's owner record and heartbeat, with the first claim made by O_CREAT|O_EXCL.

    Shards start one task each; a cache is wanted by every task of the run in the same second, on
    nodes where fcntl locks may mean nothing (NFS): exclusive creation is what NFSv3+ does atomically.
    A dead or released builder's record is taken over as a shard's is (write, wait, re-read)."""

    def try_acquire(self) -> bool:
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            os.close(os.open(self.owner_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            if self.read_owner() is None and self._claim_age() < self.stale_seconds:
                return False  # claimed a moment ago; the record is not written yet
        return super().try_acquire()

    def _claim_age(self) -> float:
        try:
            return time.time() - self.owner_path.stat().st_mtime
        except FileNotFoundError:
            return 0.0  # released between our claim attempt and now: try again next poll


@dataclass
class WarmStart:
    """How this task loads: "warm" (a complete shared cache), "build" (this task builds it, holding
    the lock), "private" (its own cache, no lock) or "eager" (waited too long: no compile at all)."""

    mode: str
    folder: Path | None
    waited_seconds: float = 0.0
    lock: BuildLock | None = None

    @property
    def eager(self) -> bool:
        return self.mode == "eager"

    def finish(self, loaded: bool, **record) -> None:
        """After the engine load: a builder whose engine loaded marks the cache complete; either way
        it lets go of the lock (a failed load leaves the build to the next task that asks)."""
        if self.lock is None:
            return
        try:
            if loaded and self.lock.still_held():
                write_json_atomic(
                    self.folder / COMPLETE,
                    {
                        "built": time.time(),
                        "host": socket.gethostname(),
                        "pid": os.getpid(),
                        "job_id": os.environ.get("SLURM_JOB_ID"),
                        **record,
                    },
                )
        finally:
            self.lock.release()
            self.lock = None


def acquire(
    folder: Path,
    *,
    heartbeat_seconds: float,
    stale_seconds: float,
    wait_seconds: float,
    poll_seconds: float | None = None,
) -> WarmStart:
    """Use the complete cache in `folder`, or build it, or wait for its builder up to `wait_seconds`."""
    started = time.monotonic()
    lock = BuildLock(folder / "builder", heartbeat_seconds=heartbeat_seconds, stale_seconds=stale_seconds)
    poll = poll_seconds if poll_seconds is not None else max(0.5, heartbeat_seconds / 2)
    while True:
        waited = time.monotonic() - started
        if (folder / COMPLETE).exists():
            point_caches(folder)
            return WarmStart("warm", folder, waited)
        if lock.try_acquire():
            if (folder / COMPLETE).exists():  # completed between our look and our claim
                lock.release()
                continue
            point_caches(folder)
            return WarmStart("build", folder, waited, lock)
        if waited >= wait_seconds:
            owner = lock.read_owner() or {}
            log.warning(
                "compile cache %s: still being built by %s (pid %s, job %s) after %.0fs; loading "
                "eager instead (no compile; slower decoding)",
                folder,
                owner.get("host"),
                owner.get("pid"),
                owner.get("job_id"),
                waited,
            )
            return WarmStart("eager", None, waited)
        time.sleep(poll)


def private(folder: Path) -> WarmStart:
    point_caches(folder)
    return WarmStart("private", folder)


def task_id() -> str:
    return f"{os.environ.get('SLURM_JOB_ID', os.getpid())}-{os.environ.get('SLURM_ARRAY_TASK_ID', 0)}"


@contextmanager
def warm_start(
    model_name: str,
    model_path: str,
    *,
    shared: bool,
    heartbeat_seconds: float,
    stale_seconds: float,
    wait_seconds: float,
    root: Path | None = None,
    device: str | None = None,
) -> Iterator[WarmStart | None]:
    """Around one engine load. None where no cache root is set (the local executor: one process
    loads each model once, nothing to share); the caller loads as before. `shared=False` (the run's
    setting, or a load that compiles nothing): this task's own folder, no lock."""
    root = root or (Path(os.environ[ROOT_ENV]) if os.environ.get(ROOT_ENV) else None)
    if root is None:
        yield None
        return
    key = cache_key(model_name, model_path, device=device)
    own = root / "private" / task_id() / key.folder_name()
    if shared:
        start = acquire(
            root / key.folder_name(),
            heartbeat_seconds=heartbeat_seconds,
            stale_seconds=stale_seconds,
            wait_seconds=wait_seconds,
        )
        if start.eager:
            point_caches(own)  # compiles nothing, but vLLM still keeps a few files in its cache root
    else:
        start = private(own)
    log.info("compile cache: %s %s (waited %.1fs)", start.mode, start.folder or own, start.waited_seconds)
    loaded = False
    try:
        yield start
        loaded = True
    finally:
        start.finish(loaded, key=asdict(key))
