"""Benchmark 4: the merge at scale -- wall time, peak memory, and a pyarrow-only floor.

For each run size (default 44,000 and 176,000 problems over the six domains in the default
proportions; --quick: 2,000 and 8,000) this script writes a complete run's work/ folder directly
with pyarrow, in the exact schemas the stages write (instructions: INSTRUCTION_SCHEMA; select: its
eight columns; responses and multi_responses: RESPONSE_SCHEMA with 1 and 7 responses; rewards:
id/scores/scored_part), chunked per `sharding.chunk_size`, with the shard plan of the throughput
model and a DONE.json per shard. Responses are R1-sized: 2,000-4,000 tokens at ~4 chars/token,
`<think>...</think>` then a `\\boxed{}` answer (drawn from a pool of 256 texts).

Then, each in a fresh subprocess (peak RSS = `resource.getrusage(RUSAGE_CHILDREN).ru_maxrss` of a
wrapper that runs only that child):
  merge     `magpie_hpc.merge.merge_run(RunContext(run_dir))`: every JSON + Parquet output, plots, README
  merge-strings  the same with `quality.answer_equivalence = false` (answers compared as strings), to
            measure what the equivalence check costs (target: within 5% of the merge)
  floor     pyarrow alone writing the same bytes: every output Parquet file re-encoded row group by
            row group (ParquetWriter, zstd) and every output JSON file's bytes streamed through
            pyarrow's input/output streams (+ fsync, as the merge does), into scratch copies

Targets: peak RSS flat in the number of problems (< 1 GB); time linear; merge within 2x of floor.
Disk: checked before each size (work + output + one file's floor copy); a size that does not fit
is scaled down and reported as such. Everything is deleted after measuring.

Usage: python bench/merge_scale.py [--quick] [--sizes N N ...] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _common import BENCH, make_run, quick_flag, scratch, table, write_results

POOL = 256
WORDS = (
    "we reduce the claim using lemma hence the group order divides therefore every subgroup of index two is "
    "normal and the quotient is cyclic so by induction the bound holds for all n"
).split()
# Some answers are equal in value but not in writing, so the merge's equivalence check (math-verify,
# quality/equivalence.py) has work to do; the pool is small, so most parses are cached (see the
# `equivalence_probe` for the cost of answers never seen before).
ANSWERS = ("12", "7", "\\frac{1}{2}", "3", "0.5", "\\sqrt{8}", "2\\sqrt{2}", "\\{1,2\\}", "\\{2,1\\}")


def pools(seed: int = 0):
    """R1-sized texts: (responses, reasonings, answers, tokens, complete) as Arrow arrays."""
    import pyarrow as pa

    rng = random.Random(seed)
    responses, reasonings, answers, tokens, complete = [], [], [], [], []
    for i in range(POOL):
        n_tokens = rng.randint(2000, 4000)
        words = []
        size = 0
        while size < n_tokens * 4:
            w = rng.choice(WORDS)
            words.append(w)
            size += len(w) + 1
        body = " ".join(words)
        if i % 20 == 0:  # 5%: cut off inside <think> (finish_reason length): no answer
            responses.append(body)
            reasonings.append(None)
            answers.append(None)
            complete.append(False)
        else:
            answer = f"By the argument above the result holds. The answer is $\\boxed{{{rng.choice(ANSWERS)}}}$."
            responses.append(f"{body}\n</think>\n\n{answer}")
            reasonings.append(body)
            answers.append(answer)
            complete.append(True)
        tokens.append(n_tokens)
    return (
        pa.array(responses),
        pa.array(reasonings, pa.string()),
        pa.array(answers, pa.string()),
        pa.array(tokens, pa.int64()),
        pa.array(complete),
    )


def response_table(ids: list[str], n: int, pool, rng) -> "pa.Table":  # noqa: F821 - pyarrow is imported inside
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from magpie_hpc.stages.responses import RESPONSE_SCHEMA

    texts, reasonings, answers, tokens, complete = pool
    rows = len(ids)
    pick = pa.array(rng.integers(0, POOL, rows * n))
    offsets = pa.array(np.arange(0, rows * n + 1, n, dtype=np.int32))

    def lists(values):
        return pa.ListArray.from_arrays(offsets, values)

    ok = complete.take(pick)
    finish = pc.if_else(ok, "stop", "length")
    return pa.Table.from_arrays(
        [
            pa.array(ids),
            pa.array(rng.integers(90, 400, rows), pa.int64()),
            lists(texts.take(pick)),
            lists(reasonings.take(pick)),
            lists(answers.take(pick)),
            lists(finish),
            lists(tokens.take(pick)),
            lists(pc.invert(ok)),
            lists(ok),
            pa.array(rng.integers(0, 2**31 - 1, rows), pa.int64()),
        ],
        schema=RESPONSE_SCHEMA,
    )


def done_marker(store, stage: str, domain: str, shard: int, table, extra: dict | None = None) -> None:
    summary = {
        "stage": stage,
        "domain": domain,
        "shard": shard,
        "rows": table.num_rows,
        "chunks": len(store.committed_indices()),
        "resumed_at_chunk": 0,
        "attempt": 1,
        "model_load_seconds": 0.0,
        "seconds": 1.0,
        "host": "bench",
        "finished": time.time(),
        **(extra or {}),
    }
    if "output_tokens" in table.column_names:
        import pyarrow.compute as pc

        col = table["output_tokens"]
        summary["output_tokens"] = int(
            pc.sum(pc.list_flatten(col) if hasattr(col.type, "value_type") else col).as_py() or 0
        )
        summary["prompt_tokens"] = int(pc.sum(table["prompt_tokens"]).as_py())
    if "finish_reasons" in table.column_names:
        flat = pc_flat(table["finish_reasons"])
        summary["finish_reasons"] = {k: flat.count(k) for k in set(flat)}
    store.mark_done(summary)


def pc_flat(col) -> list:
    import pyarrow.compute as pc

    return pc.list_flatten(col).to_pylist()


def write_work(run_dir: Path) -> dict:
    """A complete work/ folder for the run's plan, as the stages would have left it."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from magpie_hpc.context import RunContext
    from magpie_hpc.engine.synthetic import _instruction, _rng
    from magpie_hpc.plan import instruction_id, stage_shards
    from magpie_hpc.stages.instructions import INSTRUCTION_SCHEMA

    ctx = RunContext(run_dir)
    cfg, chunk = ctx.cfg, ctx.cfg.sharding.chunk_size
    rng = np.random.default_rng(0)
    pool = pools()
    started = time.monotonic()

    def commit_chunks(store, table):
        for index, start in enumerate(range(0, table.num_rows, chunk)):
            store.path.mkdir(parents=True, exist_ok=True)
            pq.write_table(table.slice(start, chunk), store.chunk_path(index), compression="zstd")

    for domain in cfg.domains:
        count = cfg.domain(domain).count
        instructions = [_instruction(_rng(domain, i)) for i in range(count)]
        tokens = [len(t) // 4 for t in instructions]
        for shard in stage_shards(cfg, "instructions", domain):
            part = slice(min(shard.start, count), min(shard.stop, count))
            n = part.stop - part.start
            table = pa.table(
                {
                    "sample": list(range(n)),
                    "instruction": instructions[part],
                    "raw": instructions[part],
                    "drop_reason": [None] * n,
                    "answer_cut": [False] * n,
                    "finish_reason": ["stop"] * n,
                    "prompt_tokens": [180] * n,
                    "output_tokens": tokens[part],
                    "seed": [1] * n,
                    "chunk": [0] * n,
                    "created": [1_700_000_000] * n,
                },
                schema=INSTRUCTION_SCHEMA,
            )
            store = ctx.store.shard("instructions", domain, shard.shard)
            commit_chunks(store, table)
            done_marker(store, "instructions", domain, shard.shard, table, {"kept": n, "drop_reasons": {}})
        ids = [instruction_id(domain, i) for i in range(count)]
        select = pa.table(
            {
                "id": ids,
                "index": list(range(count)),
                "instruction": instructions,
                "seed": [1] * count,
                "created": [1_700_000_000] * count,
                "instruction_tokens": tokens,
                "source_shard": [0] * count,
                "source_sample": list(range(count)),
            }
        )
        store = ctx.store.shard("select", domain, 0)
        commit_chunks(store, select)  # the real select writes its table as one chunk; so do we
        done_marker(store, "select", domain, 0, select)
        for stage, n in (("responses", 1), ("multi_responses", cfg.multi_responses.num_responses)):
            for shard in stage_shards(cfg, stage, domain):
                table = response_table(ids[shard.start : shard.stop], n, pool, rng)
                store = ctx.store.shard(stage, domain, shard.shard)
                commit_chunks(store, table)
                done_marker(store, stage, domain, shard.shard, table)
                if stage == "multi_responses":
                    scores = pa.ListArray.from_arrays(
                        pa.array(np.arange(0, shard.size * n + 1, n, dtype=np.int32)),
                        pa.array(rng.normal(0.0, 1.0, shard.size * n)),
                    )
                    rewards = pa.table(
                        {"id": ids[shard.start : shard.stop], "scores": scores, "scored_part": ["answer"] * shard.size},
                        schema=pa.schema(
                            [("id", pa.string()), ("scores", pa.list_(pa.float64())), ("scored_part", pa.string())]
                        ),
                    )
                    rstore = ctx.store.shard("rewards", domain, shard.shard)
                    commit_chunks(rstore, rewards)
                    done_marker(rstore, "rewards", domain, shard.shard, rewards)
    return {"seconds": time.monotonic() - started, "bytes": folder_bytes(run_dir / "work")}


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def measured(args: list[str]) -> dict:
    """Run `python bench/merge_scale.py --child ...` under a fresh wrapper: wall time and the
    child's peak RSS (RUSAGE_CHILDREN of a wrapper that has no other child)."""
    wrapper = (
        "import json, resource, subprocess, sys, time\n"
        "t = time.monotonic()\n"
        "rc = subprocess.run(sys.argv[1:]).returncode\n"
        "wall = time.monotonic() - t\n"
        "ru = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "print(json.dumps({'rc': rc, 'seconds': wall, 'cpu_seconds': ru.ru_utime + ru.ru_stime, "
        "'peak_rss_mb': ru.ru_maxrss / 1024}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", wrapper, sys.executable, str(BENCH / "merge_scale.py"), "--child", *args],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result["rc"] != 0:
        raise RuntimeError(f"child {args} failed: {out.stderr[-3000:]}")
    return result


def child_merge(run_dir: Path, equivalence: bool = True) -> None:
    from magpie_hpc.context import RunContext
    from magpie_hpc.merge import merge_run

    ctx = RunContext(run_dir)
    ctx.cfg.quality.answer_equivalence = equivalence  # `merge-strings`: the same merge without it
    merge_run(ctx)


def equivalence_probe(problems: int = 300, seed: int = 0) -> dict:
    """The cost of the equivalence check on answers it has never seen (no cache helps): problems of 7
    answers in 3-4 forms needing math-verify, a value written two ways, on the default workers."""
    from magpie_hpc.quality.answers import normalize_answer
    from magpie_hpc.quality.equivalence import EquivalenceChecker, EquivalenceStats, vote_stream

    rng = random.Random(seed)
    forms = (
        lambda a, b: f"{a}.{b}",
        lambda a, b: f"{a}\\sqrt{{{b}}}",
        lambda a, b: f"\\{{{a},{b}\\}}",
        lambda a, b: f"{a}\\pi",
        lambda a, b: f"x^{{{b}}}+{a}",
        lambda a, b: f"\\frac{{{a}}}{{{b}}}",
    )
    items = []
    for _ in range(problems):
        a, b = rng.randint(10, 10**6), rng.randint(2, 97)
        picks = [rng.choice(forms)(rng.randint(10, 10**6), rng.randint(2, 97)) for _ in range(3)]
        items.append([f"{a / b:.6f}", f"\\frac{{{a}}}{{{b}}}", *picks, picks[0], f"\\frac{{{a}}}{{{b}}}"])
    stats = EquivalenceStats()
    with EquivalenceChecker() as checker:
        list(vote_stream([["1", "0.5"]], lambda r: (r, r), checker, EquivalenceStats()))  # workers started
        started = time.perf_counter()
        list(vote_stream(items, lambda r: (r, [normalize_answer(x) for x in r]), checker, stats))
        seconds = time.perf_counter() - started
        workers = checker.workers
    return {
        "problems": problems,
        "workers": workers,
        "ms_per_problem": round(seconds / problems * 1000, 3),
        "stats": stats.to_json(),
    }


def child_floor(run_dir: Path) -> None:
    """pyarrow alone writing the bytes the merge wrote: Parquet re-encoded, JSON streamed."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from magpie_hpc.context import RunContext

    ctx = RunContext(run_dir)
    for domain in ctx.cfg.domains:
        for src in sorted((run_dir / domain).glob("*.parquet")):
            dst = src.with_name(f".floor-{src.name}")
            reader = pq.ParquetFile(src)
            with pq.ParquetWriter(dst, reader.schema_arrow, compression="zstd") as writer:
                for i in range(reader.num_row_groups):
                    writer.write_table(reader.read_row_group(i))
            dst.unlink()
        for src in sorted((run_dir / domain).glob("*.json")):
            dst = src.with_name(f".floor-{src.name}")
            with pa.input_stream(str(src)) as fin, pa.output_stream(str(dst)) as fout:
                while block := fin.read(64 << 20):
                    fout.write(block)
            fd = os.open(dst, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
            dst.unlink()


def encoding_probe(run_dir: Path, domain: str, records: int = 300) -> dict:
    """Where the merge's per-record CPU goes, on its own output: the preference JSON encoding as the
    merge did it first (json.dumps indent=2, whose pure-Python encoder runs whenever indent is set)
    vs msgspec, which it uses now, formatting the same bytes; and the answer normalisation the
    merge runs 14 times per problem (final_answers + majority_answer, uncached here)."""
    import msgspec

    from magpie_hpc.merge import final_answers
    from magpie_hpc.quality.answers import majority_answer

    path = next((run_dir / domain).glob("*_7res_*.json"))
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)[:records]
    enc = msgspec.json.Encoder()

    def current(r):
        return json.dumps(r, indent=2, ensure_ascii=False).replace("\n", "\n  ")

    def fast(r):
        return msgspec.json.format(enc.encode(r), indent=2).decode().replace("\n", "\n  ")

    same = sum(current(r) == fast(r) for r in data)
    timing = {"current": [], "msgspec": [], "answers": []}
    for _ in range(3):
        for name, fn in (("current", current), ("msgspec", fast)):
            t = time.perf_counter()
            for r in data:
                fn(r)
            timing[name].append((time.perf_counter() - t) / len(data))
        t = time.perf_counter()
        for r in data:
            raw, _ = final_answers(r["answers"], r["complete"])
            majority_answer(raw)
        timing["answers"].append((time.perf_counter() - t) / len(data))
    best = {k: min(v) for k, v in timing.items()}
    return {
        "records": len(data),
        "byte_identical": same,
        "json_ms_per_record": round(best["current"] * 1000, 3),
        "msgspec_ms_per_record": round(best["msgspec"] * 1000, 3),
        "answers_ms_per_record": round(best["answers"] * 1000, 3),
        "json_speedup": round(best["current"] / best["msgspec"], 2),
    }


def output_bytes(run_dir: Path, domains) -> dict:
    js = sum(f.stat().st_size for d in domains for f in (run_dir / d).glob("*.json"))
    pq_ = sum(f.stat().st_size for d in domains for f in (run_dir / d).glob("*.parquet"))
    return {"json": js, "parquet": pq_}


def scaled_counts(total: int) -> dict:
    from magpie_hpc.registry import DOMAIN_PRESETS

    base = sum(p["count"] for p in DOMAIN_PRESETS.values())
    return {d: max(1, round(p["count"] * total / base)) for d, p in DOMAIN_PRESETS.items()}


def one_size(total: int, keep: bool) -> dict:
    root = scratch("merge_scale")
    shutil.rmtree(root / "data", ignore_errors=True)
    counts = scaled_counts(total)
    run_dir = make_run(
        root,
        counts=counts,
        domains="all",
        engine={"kind": "synthetic", "reward_kind": "synthetic"},
        sharding={"chunk_size": 256},
    )
    try:
        work = write_work(run_dir)
        print(
            f"  {total:,} problems: work/ written in {work['seconds']:.0f}s ({work['bytes'] / 1e9:.2f} GB)", flush=True
        )
        strings = measured(["merge-strings", str(run_dir)])
        print(
            f"  merge without answer equivalence {strings['seconds']:.0f}s (CPU {strings['cpu_seconds']:.0f}s)",
            flush=True,
        )
        merge = measured(["merge", str(run_dir)])
        with open(run_dir / next(iter(counts)) / "dataset_info.json") as fh:
            eq_stats = json.load(fh)["quality"]["answer_equivalence"]
        out = output_bytes(run_dir, counts)
        print(
            f"  merge {merge['seconds']:.0f}s (CPU {merge['cpu_seconds']:.0f}s), peak RSS {merge['peak_rss_mb']:.0f} MB, output "
            f"{(out['json'] + out['parquet']) / 1e9:.2f} GB",
            flush=True,
        )
        floor = measured(["floor", str(run_dir)])
        print(f"  pyarrow floor {floor['seconds']:.0f}s (CPU {floor['cpu_seconds']:.0f}s)", flush=True)
        print(
            f"  answer equivalence: merge x{merge['seconds'] / strings['seconds']:.3f} of the merge without it; "
            f"first domain {eq_stats}",
            flush=True,
        )
        probe = encoding_probe(run_dir, next(iter(counts)))
        print(
            f"  preference record: JSON {probe['json_ms_per_record']} ms (msgspec {probe['msgspec_ms_per_record']} ms,"
            f" {probe['byte_identical']}/{probe['records']} byte-identical), answers "
            f"{probe['answers_ms_per_record']} ms",
            flush=True,
        )
        from magpie_hpc.context import RunContext
        from magpie_hpc.plan import stage_shards

        cfg = RunContext(run_dir).cfg
        shards = {s: sum(len(stage_shards(cfg, s, d)) for d in cfg.domains) for s in ("responses", "multi_responses")}
        return {
            "problems": sum(counts.values()),
            "counts": counts,
            "shards": shards,
            "work": work,
            "merge": merge,
            "floor": floor,
            "output_bytes": out,
            "merge_over_floor": merge["seconds"] / floor["seconds"],
            "probe": probe,
            "merge_without_equivalence": strings,
            "equivalence_overhead": merge["seconds"] / strings["seconds"] - 1,
            "equivalence_stats": eq_stats,
        }
    finally:
        if not keep:
            shutil.rmtree(run_dir, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--sizes", type=int, nargs="+")
    p.add_argument("--keep", action="store_true", help="keep the run folders (default: delete after measuring)")
    p.add_argument("--child", nargs=2, metavar=("WHAT", "RUN_DIR"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        what, run_dir = args.child
        if what.startswith("merge"):
            child_merge(Path(run_dir), equivalence=what == "merge")
        else:
            child_floor(Path(run_dir))
        return
    quick = args.quick or quick_flag()
    sizes = args.sizes or ([2_000, 8_000] if quick else [44_000, 176_000])
    results, notes = [], []
    bytes_per_problem = 400_000  # before the first measurement: a generous guess (work + output + copy)
    for total in sizes:
        free = shutil.disk_usage(scratch("merge_scale")).free
        budget = free - 8e9  # leave room for everyone else on this disk
        if total * bytes_per_problem > budget:
            fits = int(budget / bytes_per_problem) // 1000 * 1000
            notes.append(
                f"{total:,} problems need ~{total * bytes_per_problem / 1e9:.0f} GB, "
                f"{free / 1e9:.0f} GB free: scaled down to {fits:,}"
            )
            print("disk: " + notes[-1], flush=True)
            total = fits
            if total <= 0:
                continue
        print(f"{total:,} problems ...", flush=True)
        r = one_size(total, args.keep)
        results.append(r)
        written = r["work"]["bytes"] + r["output_bytes"]["json"] + r["output_bytes"]["parquet"]
        bytes_per_problem = 1.15 * written / r["problems"]
    rows = []
    for r in results:
        out = r["output_bytes"]
        rows.append(
            [
                f"{r['problems']:,}",
                f"{r['shards']['responses']} / {r['shards']['multi_responses']}",
                f"{(out['json'] + out['parquet']) / 1e9:.1f}",
                f"{r['merge']['seconds']:.0f}",
                f"{r['merge']['seconds'] / r['problems'] * 1000:.2f}",
                f"**{r['merge']['peak_rss_mb']:.0f}**",
                f"{r['floor']['seconds']:.0f}",
                f"**{r['merge_over_floor']:.2f}**",
            ]
        )
    print()
    print(
        table(
            [
                "problems",
                "shards (responses / 7-responses)",
                "output GB (JSON + Parquet)",
                "merge s",
                "merge ms/problem",
                "merge peak RSS MB",
                "pyarrow floor s",
                "merge / floor",
            ],
            rows,
        )
    )
    if len(results) >= 2:
        a, b = results[0], results[-1]
        scale = b["problems"] / a["problems"]
        print(
            f"\n{scale:.1f}x the problems: merge time x{b['merge']['seconds'] / a['merge']['seconds']:.2f}, "
            f"peak RSS x{b['merge']['peak_rss_mb'] / a['merge']['peak_rss_mb']:.2f}"
        )
    for n in notes:
        print("note: " + n)
    if results:
        probe = equivalence_probe()
        per_44k = probe["ms_per_problem"] * 44_000 / 1000
        print(
            f"equivalence on never-seen answers: {probe['ms_per_problem']} ms/problem on {probe['workers']} "
            f"worker(s), ~{per_44k:.0f} s at 44K if every problem needed it ({probe['stats']})"
        )
        for r in results:
            print(
                f"{r['problems']:,} problems: merge {r['merge']['seconds']:.1f}s with equivalence, "
                f"{r['merge_without_equivalence']['seconds']:.1f}s without ({r['equivalence_overhead']:+.1%})"
            )
    else:
        probe = None
    write_results(
        "merge_scale",
        {"quick": quick, "sizes_requested": sizes, "notes": notes, "runs": results, "equivalence_probe": probe},
    )


if __name__ == "__main__":
    main()
