"""Benchmark: engine load of several tasks starting at once, shared compile cache vs private caches.

N processes (default 3) load the same tiny model with torch.compile on (the CPU build compiles with
Inductor's C++ backend when not eager; tasks on CPU load eager, so this is the benchmark's switch
`cpu_compile`) at the same instant, through the package's own `compile_cache.warm_start` and
`VllmGenerator`: "private", each into a cache of its own (every one compiles), and "shared", one
cache for all (one builds under the lock, the others wait for it and read it back). Per process:
seconds from the common start signal to a loaded engine (wait for the builder included), the load
itself, and whether vLLM read its compiled graphs back. Reported: the ratio private / shared of the
slowest process (when the last task can start generating) and of the mean.

Caveats, in the results too: on 2 shared cores N concurrent compiles also compete for the CPU, so
the private figure includes that contention, as it would on a node whose tasks share its CPUs but
not on GPUs with a host each; Inductor's C++ precompiled header lives under $TMPDIR whatever the
cache dirs say (compile_cache.py), so a priming load builds it first and both setups find it there.

Usage: python bench/compile_cache.py [--quick] [--procs N] [--reps N] [--no-prime]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _common import BENCH, ROOT, median, quick_flag, scratch, table, tiny_models, write_results

MAX_MODEL_LEN = 2048


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="2 processes, one repetition")
    p.add_argument("--procs", type=int, default=None, help="processes starting at once (default 3, quick 2)")
    p.add_argument("--reps", type=int, default=1, help="repetitions of each setup, interleaved")
    p.add_argument("--no-prime", action="store_true", help="skip the priming load")
    p.add_argument("--worker", nargs=4, metavar=("SETUP", "ROOT", "GO", "OUT"), help=argparse.SUPPRESS)
    return p.parse_args()


def worker(setup: str, root: Path, go: Path, out: Path) -> None:
    """One task's engine load, timed from the start signal."""
    from magpie_hpc.compile_cache import warm_start
    from magpie_hpc.engine.vllm_engine import VllmGenerator

    model = str(tiny_models().deepseek)
    while not go.exists():
        time.sleep(0.01)
    started = time.monotonic()
    with warm_start(
        model,
        model,
        shared=setup == "shared",
        heartbeat_seconds=2.0,
        stale_seconds=30.0,
        wait_seconds=1800.0,
        root=root,
    ) as start:
        engine = VllmGenerator(
            model,
            seed=0,
            dtype="bfloat16",
            max_model_len=MAX_MODEL_LEN,
            tensor_parallel_size=1,
            gpu_memory_utilization=0.9,
            enable_prefix_caching=True,
            enforce_eager=False,
            cpu_compile=True,
        )
    out.write_text(
        json.dumps(
            {
                "setup": setup,
                "mode": start.mode,
                "waited_s": round(start.waited_seconds, 2),
                "load_s": round(engine.load_seconds, 2),
                "ready_s": round(time.monotonic() - started, 2),
            }
        )
    )
    engine.close()


def run_setup(setup: str, procs: int, base: Path) -> list[dict]:
    root, go = base / setup / "cache", base / setup / "go"
    shutil.rmtree(base / setup, ignore_errors=True)
    root.mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    children = []
    for i in range(procs):
        out, log = base / setup / f"worker-{i}.json", base / setup / f"worker-{i}.log"
        with open(log, "w") as fh:
            children.append(
                (
                    subprocess.Popen(
                        [
                            sys.executable,
                            str(BENCH / "compile_cache.py"),
                            "--worker",
                            setup,
                            str(root),
                            str(go),
                            str(out),
                        ],
                        stdout=fh,
                        stderr=fh,
                        env=env,
                    ),
                    out,
                    log,
                )
            )
    time.sleep(10)  # every worker imported the package and polls for the signal
    go.touch()
    results = []
    for child, out, log in children:
        if child.wait(timeout=3600) != 0:
            raise SystemExit(f"{setup} worker failed: see {log}")
        results.append({**json.loads(out.read_text()), "warmup_s": warmup_seconds(log.read_text())})
    return results


def warmup_seconds(log: str) -> float | None:
    """The CPU model runner's compile (its warm-up runs torch.compile), from vLLM's log lines: where
    Inductor's cache has the graphs it is a read-back, else a compile."""
    stamps = {}
    for line in log.splitlines():
        for what, text in (("start", "Warming up model for the compilation"), ("end", "Warming up done")):
            if text in line and (found := re.search(r"\d\d-\d\d (\d\d):(\d\d):(\d\d)", line)):
                h, m, sec = map(int, found.groups())
                stamps[what] = h * 3600 + m * 60 + sec
    return stamps["end"] - stamps["start"] if len(stamps) == 2 else None  # whole seconds, as vLLM logs


def summary(results: list[dict]) -> dict:
    return {
        "slowest_ready_s": max(r["ready_s"] for r in results),
        "mean_ready_s": round(sum(r["ready_s"] for r in results) / len(results), 2),
        "modes": sorted(r["mode"] for r in results),
        "warmup_s": sorted(r["warmup_s"] for r in results),
    }


def main() -> None:
    args = parse()
    if args.worker:
        setup, root, go, out = args.worker
        return worker(setup, Path(root), Path(go), Path(out))
    quick = args.quick or quick_flag()
    procs = args.procs or (2 if quick else 3)
    base = scratch("compile_cache")
    tiny_models()
    if not args.no_prime:
        run_setup("prime", 1, base)  # Inductor's C++ header under $TMPDIR, for both setups alike
    runs: dict[str, list[list[dict]]] = {"private": [], "shared": []}
    for _ in range(args.reps):
        for setup in runs:
            runs[setup].append(run_setup(setup, procs, base))
    shutil.rmtree(base, ignore_errors=True)
    sums = {setup: [summary(r) for r in reps] for setup, reps in runs.items()}
    slowest = {s: median([x["slowest_ready_s"] for x in v]) for s, v in sums.items()}
    mean = {s: median([x["mean_ready_s"] for x in v]) for s, v in sums.items()}
    ratio = {
        "slowest": round(slowest["private"] / slowest["shared"], 2),
        "mean": round(mean["private"] / mean["shared"], 2),
    }
    rows = [[s, procs, slowest[s], mean[s], sums[s][0]["warmup_s"], ", ".join(sums[s][0]["modes"])] for s in runs]
    print(table(["setup", "processes", "slowest ready s", "mean ready s", "compile warm-up s", "modes"], rows))
    print(f"\nprivate / shared: slowest {ratio['slowest']}x, mean {ratio['mean']}x")
    write_results(
        "compile_cache",
        {
            "quick": quick,
            "procs": procs,
            "reps": args.reps,
            "runs": runs,
            "summary": sums,
            "ratio_private_over_shared": ratio,
            "cpu_build": True,
            "aot_compile": os.environ.get("VLLM_USE_AOT_COMPILE", "0"),
        },
    )


if __name__ == "__main__":
    main()
