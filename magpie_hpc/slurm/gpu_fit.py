"""Does the generator fit on the partition's GPUs? Checked on the login node, before submission:
otherwise vLLM fails on the node, in every task, after hours in the queue.

What one GPU must hold (vLLM's own accounting): its share of the weights, the KV cache of at least
one full-length sequence (vLLM refuses to start without it), and the runtime (CUDA context,
activations, sampler), all within `gpu_memory_utilization` of the card.

GPU memory comes from `slurm.gpu_memory_gb` (a profile field) where set, else from what SLURM says
about the nodes (`sinfo` %G gres type and %f features): a feature like `80gb`/`gpu80g`, or a gres
type whose memory is known. The smallest matching card counts, since a task may land on it: an
`a100` constraint also matches 40 GB A100 nodes, so an A100 with no memory feature counts as 40 GB.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

GIB = 1024**3
# CUDA context, activations of a batch, sampler and graph buffers: vLLM's own profile run lands at
# 1-3 GiB per GPU for 7B-70B models; 2 GiB keeps the check from passing what cannot start.
RUNTIME_GIB = 2.0
# Gres types by their smallest memory (GiB). Ambiguous names take the smaller variant.
GRES_GPU_GIB = {
    "a100": 40,
    "a100_40g": 40,
    "a100_80g": 80,
    "a100_80gb": 80,
    "a100-80gb": 80,
    "a100-sxm4-80gb": 80,
    "h100": 80,
    "h100_80g": 80,
    "h200": 141,
    "gh200": 96,
    "a40": 48,
    "l40": 48,
    "l40s": 48,
    "a6000": 48,
    "a10": 24,
    "l4": 24,
    "v100": 16,
    "v100_32g": 32,
    "rtx6000": 24,
    "t4": 16,
    "mi250": 64,
    "mi300x": 192,
}
_FEATURE_GB = re.compile(r"(?i)(?:^|[_-]|gpu)(\d{2,3})g(?:b)?$")
TENSOR_PARALLEL_SIZES = (1, 2, 4, 8)


@dataclass(frozen=True)
class ModelNeed:
    weights_bytes: int
    kv_bytes_per_token: int
    max_model_len: int

    def per_gpu_gib(self, tensor_parallel: int) -> float:
        """Weights and one full-length sequence's KV cache, split over the GPUs, plus the runtime."""
        kv = self.kv_bytes_per_token * self.max_model_len
        return (self.weights_bytes + kv) / tensor_parallel / GIB + RUNTIME_GIB


def model_need(model_dir: str | Path, max_model_len: int, dtype: str = "bfloat16") -> ModelNeed | None:
    """From the checkpoint's files alone (no weights read): the safetensors index's total_size, else
    the weight files' sizes; the KV cache from config.json. None when the folder is not local."""
    folder = Path(model_dir)
    config_path = folder / "config.json"
    if not config_path.is_file():
        return None
    config = json.loads(config_path.read_text())
    config = config.get("text_config", config)
    index = folder / "model.safetensors.index.json"
    weights = 0
    if index.is_file():
        weights = int(json.loads(index.read_text()).get("metadata", {}).get("total_size", 0))
    if not weights:
        weights = sum(p.stat().st_size for pattern in ("*.safetensors", "*.bin") for p in folder.glob(pattern))
    heads = int(config.get("num_attention_heads", 1))
    head_dim = int(config.get("head_dim") or config.get("hidden_size", 0) // max(heads, 1))
    kv_heads = int(config.get("num_key_value_heads") or heads)
    layers = int(config.get("num_hidden_layers", 0))
    element = 4 if dtype in ("float32", "float") else 2
    return ModelNeed(weights, 2 * layers * kv_heads * head_dim * element, max_model_len)


def gpu_gib_of(gres: str, features: str) -> float | None:
    """Memory of one GPU of a node group from sinfo's %G and %f; None when neither says."""
    for feature in features.split(","):
        match = _FEATURE_GB.search(feature.strip())
        if match:
            return float(match.group(1))
    for item in gres.replace(",", " ").split():
        fields = item.split("(")[0].split(":")
        if fields[0] == "gpu" and len(fields) >= 3 and fields[1].lower() in GRES_GPU_GIB:
            return float(GRES_GPU_GIB[fields[1].lower()])
    return None


def matches_constraint(features: str, constraint: str | None) -> bool:
    """sbatch --constraint, for the common forms: `a`, `a&b`, `a|b`, `[a|b]`."""
    if not constraint:
        return True
    have = {f.strip() for f in features.split(",")}
    expr = constraint.strip("[]")
    if "|" in expr:
        return any(term.strip() in have for term in expr.split("|"))
    return all(term.strip() in have for term in expr.split("&"))


def smallest_gpu_gib(node_groups: list[tuple[str, str]], constraint: str | None) -> float | None:
    """The smallest known GPU among the node groups (gres, features) the constraint admits."""
    sizes = [
        gpu_gib_of(gres, feats)
        for gres, feats in node_groups
        if matches_constraint(feats, constraint) and "gpu" in gres
    ]
    known = [s for s in sizes if s is not None]
    return min(known) if known else None


def fitting_layout(need: ModelNeed, gpu_gib: float, utilization: float, max_gpus: int) -> int | None:
    """The smallest tensor-parallel size (one node's GPUs) at which a GPU holds its share."""
    usable = gpu_gib * utilization
    for tp in TENSOR_PARALLEL_SIZES:
        if tp <= max(max_gpus, 1) and need.per_gpu_gib(tp) <= usable:
            return tp
    return None


def fit_error(
    need: ModelNeed, tensor_parallel: int, gpu_gib: float, utilization: float, max_gpus: int, where: str
) -> str | None:
    """One line refusing the layout, naming one that fits; None when it fits."""
    usable = gpu_gib * utilization
    per_gpu = need.per_gpu_gib(tensor_parallel)
    if per_gpu <= usable:
        return None
    kv = need.kv_bytes_per_token * need.max_model_len / GIB
    what = (
        f"the generator needs ~{per_gpu:.1f} GiB per GPU at tensor_parallel_size {tensor_parallel} "
        f"(weights {need.weights_bytes / GIB:.1f} GiB + one {need.max_model_len}-token sequence's KV cache "
        f"{kv:.1f} GiB, split over {tensor_parallel}, + {RUNTIME_GIB:g} GiB runtime) and {where} has "
        f"{gpu_gib:g} GB GPUs ({usable:.1f} GiB at gpu_memory_utilization {utilization:g})"
    )
    tp = fitting_layout(need, gpu_gib, utilization, max_gpus)
    if tp is not None and tp > tensor_parallel:
        return f"engine.tensor_parallel_size: {what}; set engine.tensor_parallel_size = {tp} (or a partition with bigger GPUs)"
    if tp is None:
        return (
            f"engine.tensor_parallel_size: {what}; no split over the {max_gpus} GPUs of one node fits: choose a "
            "partition with bigger GPUs, a smaller model, or a smaller engine.max_model_len"
        )
    return (
        f"engine.tensor_parallel_size: {what}; choose a partition with bigger GPUs, a smaller model, or a smaller "
        "engine.max_model_len"
    )
