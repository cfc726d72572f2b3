"""Fail fast on the login node: what would otherwise fail hours later in the queue."""

from __future__ import annotations

import subprocess
import sys

from ..config import RunConfig
from ..errors import ConfigError
from ..models import tensor_parallel_size
from ..pipeline import gpu_stages
from . import cluster
from .submit import stage_resources


def preflight(cfg: RunConfig) -> None:
    s = cfg.slurm
    parts = cluster.partitions()
    if s.partition and s.partition not in parts:
        raise ConfigError(
            f"slurm.partition: no partition {s.partition!r} on this cluster (have {', '.join(sorted(parts))}); fix slurm.partition"
        )
    if s.account and not cluster.account_exists(s.account):
        raise ConfigError(f"slurm.account: no account {s.account!r} in sacctmgr; fix slurm.account or ask your admin")
    where = f"partition {s.partition}" if s.partition else "this cluster"
    if s.gpu_stage.gpus and "gpu" not in cluster.gres_kinds(s.partition):
        raise ConfigError(
            f"slurm.gpu_stage.gpus: {where} offers no gres 'gpu'; choose a GPU partition with slurm.partition"
        )
    # A task's GPUs must sit on one node (vLLM's tensor parallelism): sbatch would refuse the array
    # only once some were submitted, or the tasks would pend forever.
    tensor_parallel = tensor_parallel_size(cfg)
    needed = max(stage_resources(cfg, spec.name, tensor_parallel).gpus for spec in gpu_stages())
    offered = cluster.max_gres_per_node(s.partition) if needed > 1 else needed
    if needed > offered:
        raise ConfigError(
            f"engine.tensor_parallel_size: a task needs {needed} GPUs on one node and {where} offers "
            f"at most {offered}; lower it (a smaller model), set hardware.gpus_per_node = {offered} for "
            "the planner, or choose a partition with bigger nodes"
        )
    check_gpu_fit(cfg, where)
    python = s.python or sys.executable
    modules = "magpie_hpc" + (", vllm" if cfg.engine.kind == "vllm" else "")
    try:
        probe = subprocess.run([python, "-c", f"import {modules}"], capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(
            f"slurm.python: cannot run {python} ({exc}); set slurm.python to the jobs' interpreter"
        ) from None
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        raise ConfigError(
            f"slurm.python: {python} cannot import {modules} ({last}); install magpie-hpc in the jobs' environment"
        )


def check_gpu_fit(cfg: RunConfig, where: str) -> None:
    """Refuse a generator whose weights and one full-length sequence do not fit its GPUs (gpu_fit.py).
    Silent where the GPU memory or the weights are unknown (a hub id not cached here)."""
    if cfg.engine.kind != "vllm" or not cfg.slurm.gpu_stage.gpus:
        return
    from ..models import resolve_model
    from .gpu_fit import fit_error, model_need, smallest_gpu_gib

    s = cfg.slurm
    gpu_gib = s.gpu_memory_gb or smallest_gpu_gib(cluster.node_groups(s.partition), s.constraint)
    if gpu_gib is None:
        return
    try:
        model = resolve_model(cfg.model, cfg, need_weights=False)
    except ConfigError:
        return
    need = model_need(model.path, model.max_model_len, cfg.engine.dtype)
    if need is None or not need.weights_bytes:
        return
    error = fit_error(
        need,
        model.tensor_parallel_size,
        gpu_gib,
        cfg.engine.gpu_memory_utilization,
        cluster.max_gres_per_node(s.partition),
        where,
    )
    if error:
        raise ConfigError(error)
