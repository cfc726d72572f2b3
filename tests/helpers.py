"""Helpers shared by tests and benchmarks (import as `from helpers import small_config`; pytest
puts tests/ on the path, bench/_common.py adds it): plain functions, no fixtures."""

from __future__ import annotations

from pathlib import Path


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value + '"'
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


def small_config(path: Path, max_tokens: tuple[int, int] | None = None, **sections: dict) -> Path:
    """Write a TOML config with small shards/chunks so a few problems still exercise sharding.
    `max_tokens` = (instruction, response) limits for every domain and the multi-response stage."""
    from magpie_hpc.registry import DOMAIN_PRESETS

    lines = []
    defaults: dict[str, dict] = {"sharding": {"instructions": 4, "responses": 2, "multi_responses": 2, "chunk_size": 2}}
    if max_tokens is not None:
        for domain in DOMAIN_PRESETS:
            defaults[f"domain_settings.{domain}"] = {
                "max_tokens_instruction": max_tokens[0],
                "max_tokens_response": max_tokens[1],
            }
        defaults["multi_responses"] = {"max_tokens": max_tokens[1]}
    for name, values in {**defaults, **sections}.items():
        lines.append(f"[{name}]")
        for key, value in values.items():
            lines.append(f"{key} = {_toml_value(value)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def local_launch(tiny_models, output_root: Path, domains: str, count: int, config: Path) -> list[str]:
    """`launch` arguments for a local run of the tiny models on the synthetic engine."""
    return [
        "launch",
        "--executor",
        "local",
        "--engine",
        "synthetic",
        "--model",
        str(tiny_models.deepseek),
        "--reward-model",
        str(tiny_models.reward),
        "--output-root",
        str(output_root),
        "--domains",
        domains,
        "--count",
        str(count),
        "--config",
        str(config),
    ]


def make_run(tiny_models, root: Path, count: int = 6, **sections) -> Path:
    """A one-domain (algebra) run with its instructions selected (responses left to do), on the
    synthetic engine, with fast heartbeats."""
    from magpie_hpc.config import load_config
    from magpie_hpc.launch import create_run, validate
    from magpie_hpc.stages import run_shard
    from magpie_hpc.context import RunContext

    sections.setdefault("sharding", {"instructions": 8, "responses": count, "multi_responses": count, "chunk_size": 2})
    ft = {"heartbeat_seconds": 0.5, "stale_seconds": 3.0, "start_jitter_seconds": 0.0}
    sections["fault_tolerance"] = {**ft, **sections.get("fault_tolerance", {})}
    sections["engine"] = {"kind": "synthetic", "reward_kind": "synthetic", **sections.get("engine", {})}
    cfg = load_config(
        small_config(root / "cfg.toml", **sections),
        {
            "model": str(tiny_models.deepseek),
            "reward_model": str(tiny_models.reward),
            "output_root": str(root / "data"),
            "domains": "algebra",
            "executor": "local",
        },
        count=count,
    )
    model, reward, prompts = validate(cfg)
    run_dir = create_run(cfg, model, reward, prompts)
    run_shard(RunContext(run_dir), "instructions", "algebra", 0)
    run_shard(RunContext(run_dir), "select", "algebra", 0)
    return run_dir
