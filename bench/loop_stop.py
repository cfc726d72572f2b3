"""Benchmark: vLLM's loop stop (config `repetition_detection`) on the response stage, on and off.

The same prompts through the real pipeline (`run_shard` of the responses stage, model loaded once),
at the seed's response temperatures (0.0 and 0.05), with the detection on (the default) and off:
tokens generated, wall time, finish reasons, and the ratios side by side. The tiny model is built
to stop under greedy decoding (magpie_hpc/fixtures/), so a repetition penalty below 1 (it rewards tokens
already written) drives every response into the loop an R1 model falls into at these temperatures
("2,2,2,..." until max_tokens): the figures are the case where every response loops; a run's real
loop rate comes from a pilot run (its card and run summary count them). Also measured: the cost of
vLLM's check itself (it runs in Python in the scheduler, for every request at every step), and the
GPU-hours a 44K-problem run would save at loop rates of 5, 10 and 20% at the planned tokens/s.

Usage: python bench/loop_stop.py [--quick] [--reps N]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import time
from collections import Counter

from magpie_hpc.plan import tokens_per_second_per_gpu
from _common import make_run, median, quick_flag, reset_shard, scratch, set_config, table, tiny_models, write_results

DOMAIN = "algebra"
TEMPERATURES = (0.0, 0.05)  # the seed's response temperatures
LOOP_RATES = (0.05, 0.10, 0.20)
# Where in its budget a loop is stopped, for the 44K projection: a real loop starts somewhere in the
# response and the stop needs min_count laps of it; half the budget is the assumption shown.
STOPPED_AT = 0.5


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer problems, one repetition")
    p.add_argument("--reps", type=int, default=None, help="interleaved repetitions (default 2, quick 1)")
    p.add_argument("--problems", type=int, help="problems of the response shard (default 64, quick 32)")
    p.add_argument("--max-tokens", type=int, default=1024, help="max_tokens_response")
    p.add_argument("--repetition-penalty", type=float, default=0.7)
    return p.parse_args()


def set_field(run_dir, path: list[str], value) -> None:
    """One nested field of a run's frozen config (benchmark only; the shard plan is unchanged)."""
    manifest_path = run_dir / "run.json"
    manifest = json.loads(manifest_path.read_text())
    node = manifest["config"]
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    manifest_path.write_text(json.dumps(manifest, indent=2))


def check_cost_us(cfg) -> float:
    """Microseconds per call of vLLM's check on a 4,096-token output that does not loop (the common
    case: most sizes fail at their first comparison)."""
    from vllm.sampling_params import RepetitionDetectionParams
    from vllm.v1.core.sched.utils import check_sequence_repetition

    rd = cfg.responses.repetition_detection
    params = RepetitionDetectionParams(rd.max_pattern_size, rd.min_pattern_size, rd.min_count)
    rng = random.Random(0)
    tokens = [rng.randrange(150_000) for _ in range(4096)]
    calls, best = 2_000, float("inf")
    for _ in range(7):  # the fastest of several passes: on a shared machine the others waited
        started = time.perf_counter()
        for _ in range(calls):
            check_sequence_repetition(tokens, params)
        best = min(best, time.perf_counter() - started)
    return best / calls * 1e6


def main() -> None:
    args = parse()
    from magpie_hpc.config import RunConfig
    from magpie_hpc.context import RunContext
    from magpie_hpc.engine import EngineCache
    from magpie_hpc.engine.vllm_engine import VllmGenerator
    from magpie_hpc.plan import planned_loop_savings
    from magpie_hpc.stages import run_shard

    quick = args.quick or quick_flag()
    reps = args.reps or (1 if quick else 2)
    problems = args.problems or (32 if quick else 64)
    tiny_models()
    root = scratch("loop_stop")
    shutil.rmtree(root / "data", ignore_errors=True)
    run_dir = make_run(
        root,
        count=problems,
        engine={
            "kind": "synthetic",
            "reward_kind": "synthetic",
            "max_model_len": args.max_tokens + 512,
            "enforce_eager": True,
        },
        sharding={"instructions": problems, "responses": problems, "multi_responses": problems, "chunk_size": 256},
        responses={"repetition_penalty": args.repetition_penalty},
        quality={"near_dedup": False},
        max_tokens=(128, args.max_tokens),
    )
    # The problems come from the synthetic engine (realistic text, at once); only responses are measured.
    for stage in ("instructions", "select"):
        run_shard(RunContext(run_dir), stage, DOMAIN, 0)
    set_config(run_dir, "engine", "kind", "vllm")
    ctx = RunContext(run_dir)
    m, eng = ctx.model, ctx.cfg.engine
    started = time.monotonic()
    gen = VllmGenerator(
        m.path,
        seed=0,
        dtype=eng.dtype,
        max_model_len=m.max_model_len,
        tensor_parallel_size=m.tensor_parallel_size,
        gpu_memory_utilization=eng.gpu_memory_utilization,
        enable_prefix_caching=eng.enable_prefix_caching,
        enforce_eager=eng.enforce_eager,
    )
    load = time.monotonic() - started
    cache = EngineCache()
    cache.generator(lambda: gen)
    print(
        f"model load (excluded): {load:.1f}s; {problems} problems, max_tokens {args.max_tokens}, "
        f"repetition_penalty {args.repetition_penalty}",
        flush=True,
    )

    def measure(temperature: float, enabled: bool) -> dict:
        set_field(run_dir, ["domain_settings", DOMAIN, "response_temperature"], temperature)
        set_field(run_dir, ["responses", "repetition_detection", "enabled"], enabled)
        reset_shard(run_dir, "responses", DOMAIN, 0)
        t0 = time.monotonic()
        done = run_shard(RunContext(run_dir), "responses", DOMAIN, 0, engines=cache)
        return {
            "tokens": done["output_tokens"],
            "seconds": time.monotonic() - t0,
            "finish_reasons": dict(Counter(done["finish_reasons"])),
        }

    measure(TEMPERATURES[0], True)  # warm-up (prefix cache, allocator)
    results = {}
    for temperature in TEMPERATURES:
        runs = {"on": [], "off": []}
        for rep in range(reps):  # interleaved: the machine is shared
            for key in ("on", "off"):
                runs[key].append(measure(temperature, key == "on"))
            print(f"t={temperature} rep {rep}: on {runs['on'][-1]}, off {runs['off'][-1]}", flush=True)
        on_tok, off_tok = runs["on"][-1]["tokens"], runs["off"][-1]["tokens"]
        on_s, off_s = median([r["seconds"] for r in runs["on"]]), median([r["seconds"] for r in runs["off"]])
        results[str(temperature)] = {
            "tokens_on": on_tok,
            "tokens_off": off_tok,
            "token_ratio_on_off": round(on_tok / off_tok, 4),
            "seconds_on": round(on_s, 2),
            "seconds_off": round(off_s, 2),
            "time_ratio_on_off": round(on_s / off_s, 4),
            "finish_reasons_on": runs["on"][-1]["finish_reasons"],
            "finish_reasons_off": runs["off"][-1]["finish_reasons"],
            "seconds_on_all": [round(r["seconds"], 2) for r in runs["on"]],
            "seconds_off_all": [round(r["seconds"], 2) for r in runs["off"]],
        }
    cache.close()

    cfg = RunConfig()  # the defaults: 44K problems, 4,096-token responses, planned 2,500 tokens/s
    cost = check_cost_us(cfg)
    projection = {f"{rate:.0%}": planned_loop_savings(cfg, rate, STOPPED_AT) for rate in LOOP_RATES}
    print()
    print(
        table(
            [
                "temperature",
                "tokens on",
                "tokens off",
                "tokens on/off",
                "wall on (s)",
                "wall off (s)",
                "wall on/off",
                "finish reasons on",
                "finish reasons off",
            ],
            [
                [
                    t,
                    r["tokens_on"],
                    r["tokens_off"],
                    f"**{r['token_ratio_on_off']:.3f}**",
                    r["seconds_on"],
                    r["seconds_off"],
                    f"**{r['time_ratio_on_off']:.3f}**",
                    r["finish_reasons_on"],
                    r["finish_reasons_off"],
                ]
                for t, r in results.items()
            ],
        )
    )
    print()
    print(
        table(
            ["loop rate", "responses: tokens saved", "GPU-hours", "7 responses: tokens saved", "GPU-hours"],
            [
                [
                    rate,
                    f"{p['responses']['tokens']:,}",
                    p["responses"]["gpu_hours"],
                    f"{p['multi_responses']['tokens']:,}",
                    p["multi_responses"]["gpu_hours"],
                ]
                for rate, p in projection.items()
            ],
        )
    )
    print(
        f"\nvLLM's check at the defaults: {cost:.1f} us per request and step "
        f"({cost * 256 / 1000:.1f} ms per step at 256 running requests)"
    )
    write_results(
        "loop_stop",
        {
            "quick": quick,
            "reps": reps,
            "problems": problems,
            "max_tokens_response": args.max_tokens,
            "repetition_penalty": args.repetition_penalty,
            "model": str(m.path),
            "engine": "vllm (CPU build)" if gen.on_cpu else "vllm",
            "model_load_seconds": round(load, 1),
            "defaults": cfg.responses.repetition_detection.model_dump(),
            "temperatures": results,
            "check_cost_us_per_request_step": round(cost, 2),
            "projection_44k": {
                "problems": cfg.total_problems,
                "planned_tokens_per_second_per_gpu": {
                    st: tokens_per_second_per_gpu(cfg, st, cfg.domains[0]) for st in ("responses", "multi_responses")
                },
                "stopped_at_share_of_max_tokens": STOPPED_AT,
                "by_loop_rate": projection,
            },
        },
    )


if __name__ == "__main__":
    main()
