"""The planner's figures for the default 44K run (pure computation, no GPU, no weights).

For DeepSeek-R1-Distill-Qwen-32B (menu 1) on A100-80GB (the a100 profile, gpu_memory_utilization
0.95, 4 GPUs per node): per generation stage the KV-cache tokens, concurrent sequences, roofline
tokens/s per GPU, tasks and GPU-hours at the seed's layout (tensor parallel 1) and at the layout
the planner chooses, side by side; then the roofline tokens/s per GPU of the menu models on the
table's GPUs, which measured figures (benchmark 1 on a GPU, `calibrate`) are compared with.

Usage: python bench/planner.py [--quick]   (same output; takes a second)
"""

from __future__ import annotations

from _common import table, write_results

GENERATION = ("instructions", "responses", "multi_responses")


def _n(value) -> str:
    return "-" if value is None else f"{value:,}"


def stage_rows(cfg) -> tuple[list[dict], float]:
    from magpie_hpc.plan import stage_plan

    plan = stage_plan(cfg)
    rows = []
    for stage in ("instructions", "responses", "multi_responses", "rewards"):
        entries = [s for s in plan["stages"] if s["stage"] == stage]
        rows.append(
            {
                "stage": stage,
                "tensor_parallel_size": entries[0]["tensor_parallel_size"],
                "kv_cache_tokens": entries[0]["kv_cache_tokens"],
                "max_num_seqs": entries[0]["max_num_seqs"],
                "tokens_per_second_per_gpu": entries[0]["tokens_per_second_per_gpu"],
                "tasks": sum(s["tasks"] for s in entries),
                "gpu_hours": round(sum(s["gpu_hours"] for s in entries), 1),
            }
        )
    return rows, plan["total_gpu_hours"]


def main() -> None:
    from magpie_hpc.config import load_config
    from magpie_hpc.hardware import GPUS
    from magpie_hpc.roofline import choose_tensor_parallel, stage_layout

    seed_cfg = load_config(profile="a100", overrides={"model": "1", "engine": {"tensor_parallel_size": 1}})
    chosen_cfg = load_config(profile="a100", overrides={"model": "1"})
    seed_rows, seed_total = stage_rows(seed_cfg)
    chosen_rows, chosen_total = stage_rows(chosen_cfg)
    tp = choose_tensor_parallel(chosen_cfg).tensor_parallel_size
    print(f"\n### 44K run, R1-Distill-Qwen-32B on A100-80GB: seed's layout (TP 1) vs the planner's (TP {tp})\n")
    print(
        table(
            [
                "stage",
                "TP",
                "KV-cache tokens",
                "seqs",
                "tokens/s/GPU",
                "tasks",
                "GPU-hours",
                f"TP {tp}: KV-cache tokens",
                "seqs",
                "tokens/s/GPU",
                "tasks",
                "GPU-hours",
            ],
            [
                [
                    a["stage"],
                    a["tensor_parallel_size"],
                    _n(a["kv_cache_tokens"]),
                    a["max_num_seqs"] or "-",
                    f"{a['tokens_per_second_per_gpu']:,.0f}",
                    a["tasks"],
                    f"{a['gpu_hours']:,.1f}",
                    _n(b["kv_cache_tokens"]),
                    b["max_num_seqs"] or "-",
                    f"{b['tokens_per_second_per_gpu']:,.0f}",
                    b["tasks"],
                    f"{b['gpu_hours']:,.1f}",
                ]
                for a, b in zip(seed_rows, chosen_rows)
            ]
            + [["total", "", "", "", "", "", f"**{seed_total:,.1f}**", "", "", "", "", f"**{chosen_total:,.1f}**"]],
        )
    )

    roofline = {}
    rows = []
    for key in ("1", "2", "3"):
        for gpu in GPUS:
            cfg = load_config(
                overrides={"model": key, "domains": "algebra", "hardware": {"gpu": gpu, "gpus_per_node": 8}}
            )
            try:
                best = choose_tensor_parallel(cfg).tensor_parallel_size
            except Exception as exc:  # noqa: BLE001 - a model that fits nowhere on this GPU
                rows.append([cfg.models[key].hub_id.split("/")[1], gpu, "-", str(exc)[:60], "", ""])
                continue
            figures = {s: round(stage_layout(cfg, s, "algebra", best).tokens_per_second_per_gpu) for s in GENERATION}
            roofline[f"{key}/{gpu}"] = {"tensor_parallel_size": best, **figures}
            rows.append([cfg.models[key].hub_id.split("/")[1], gpu, best, *(f"{figures[s]:,}" for s in GENERATION)])
    print("\n### Roofline tokens/s per GPU at the planner's layout (8-GPU nodes, utilization 0.95)\n")
    print(table(["model", "GPU", "TP", "instructions", "responses", "multi_responses"], rows))
    write_results(
        "planner",
        {
            "seed_layout": {"rows": seed_rows, "total_gpu_hours": seed_total},
            "chosen_layout": {"tensor_parallel_size": tp, "rows": chosen_rows, "total_gpu_hours": chosen_total},
            "roofline_tokens_per_second_per_gpu": roofline,
        },
    )


if __name__ == "__main__":
    main()
