"""Published figures of the GPUs and the menu models the planner sizes runs with (data, no logic).

GPU memory is what the device reports (nvidia-smi's total, in GiB): vLLM's
`gpu_memory_utilization` is a share of that. Bandwidths are the vendors' peak figures for the SXM
boards (L40S: PCIe); the planner applies its own efficiency factor (roofline.py). A cluster whose
GPUs are not here gives them in the `[hardware]` section of its profile or config.
"""

from __future__ import annotations

from dataclasses import dataclass

GIB = 1024**3


@dataclass(frozen=True)
class GpuSpec:
    name: str
    memory_gib: float  # device memory as reported (nvidia-smi "Total", MiB / 1024)
    bandwidth_tbs: float  # peak HBM/GDDR bandwidth, TB/s (10**12 bytes/s)
    bf16_tflops: float  # dense peak, TFLOP/s: the compute roof of the roofline
    interconnect_gbs: float  # per-GPU all-reduce bus bandwidth between GPUs of a node, GB/s

    @property
    def memory_bytes(self) -> float:
        return self.memory_gib * GIB


# NVLink figures are what NCCL's all-reduce reaches in practice (about half the unidirectional
# link rate); L40S has no NVLink and talks over PCIe Gen4 x16.
GPUS: dict[str, GpuSpec] = {
    "A100-40GB": GpuSpec("A100-40GB", memory_gib=40.0, bandwidth_tbs=1.555, bf16_tflops=312.0, interconnect_gbs=230.0),
    "A100-80GB": GpuSpec("A100-80GB", memory_gib=80.0, bandwidth_tbs=2.039, bf16_tflops=312.0, interconnect_gbs=230.0),
    "H100-80GB": GpuSpec("H100-80GB", memory_gib=79.6, bandwidth_tbs=3.35, bf16_tflops=989.0, interconnect_gbs=360.0),
    "H200": GpuSpec("H200", memory_gib=140.4, bandwidth_tbs=4.8, bf16_tflops=989.0, interconnect_gbs=360.0),
    "L40S": GpuSpec("L40S", memory_gib=45.0, bandwidth_tbs=0.864, bf16_tflops=362.0, interconnect_gbs=25.0),
}
# Names people write for the same boards (matched case-insensitively, also against torch's
# get_device_name(), e.g. "NVIDIA A100-SXM4-80GB", "NVIDIA H100 80GB HBM3").
ALIASES: dict[str, str] = {
    "a100": "A100-80GB",
    "a100-80": "A100-80GB",
    "a100-sxm4-80gb": "A100-80GB",
    "a100 80gb": "A100-80GB",
    "a100-40": "A100-40GB",
    "a100-sxm4-40gb": "A100-40GB",
    "a100 40gb": "A100-40GB",
    "h100": "H100-80GB",
    "h100-sxm": "H100-80GB",
    "h100 80gb hbm3": "H100-80GB",
    "h200": "H200",
    "h200-141gb": "H200",
    "l40s": "L40S",
}


def find_gpu(name: str) -> GpuSpec | None:
    key = name.strip().removeprefix("NVIDIA ").strip()
    for candidate in (key, key.upper()):
        if candidate in GPUS:
            return GPUS[candidate]
    lowered = key.lower()
    if lowered in ALIASES:
        return GPUS[ALIASES[lowered]]
    return next((GPUS[v] for k, v in ALIASES.items() if k in lowered and len(k) > 4), None)


@dataclass(frozen=True)
class ModelArch:
    """What the planner needs of a decoder: sizes from config.json, the parameter count from the
    safetensors index (or the shapes)."""

    layers: int
    hidden_size: int
    attention_heads: int
    kv_heads: int
    head_dim: int
    vocab_size: int
    intermediate_size: int
    parameters: int
    dtype_bytes: int = 2
    max_position_embeddings: int | None = None

    @property
    def weight_bytes(self) -> int:
        return self.parameters * self.dtype_bytes


def dense_parameters(
    layers: int,
    hidden: int,
    heads: int,
    kv_heads: int,
    head_dim: int,
    vocab: int,
    intermediate: int,
    *,
    qkv_bias: bool,
    tied: bool,
) -> int:
    """Parameters of a Llama/Qwen2 decoder from its shapes: attention (q, k, v, o), gated MLP
    (gate, up, down), two RMSNorms per layer, embeddings (and an untied LM head), the final norm."""
    q, kv = heads * head_dim, kv_heads * head_dim
    attention = hidden * q + 2 * hidden * kv + q * hidden + ((q + 2 * kv) if qkv_bias else 0)
    per_layer = attention + 3 * hidden * intermediate + 2 * hidden
    return layers * per_layer + vocab * hidden * (1 if tied else 2) + hidden


def _qwen2(layers, hidden, heads, intermediate, max_pos) -> ModelArch:
    return ModelArch(
        layers,
        hidden,
        heads,
        8,
        hidden // heads,
        152064,
        intermediate,
        dense_parameters(layers, hidden, heads, 8, hidden // heads, 152064, intermediate, qkv_bias=True, tied=False),
        2,
        max_pos,
    )


def _llama3_70b() -> ModelArch:
    return ModelArch(
        80,
        8192,
        64,
        8,
        128,
        128256,
        28672,
        dense_parameters(80, 8192, 64, 8, 128, 128256, 28672, qkv_bias=False, tied=False),
        2,
        131072,
    )


# The menu models' published config.json figures (Hugging Face, all bf16, untied embeddings), for
# plans made where the weights are not (a login node before the download). R1-Distill-Qwen-32B and
# Qwen2.5-32B-Instruct share the Qwen2.5-32B body; R1-Distill-Llama-70B and Llama-3.3-70B share
# Llama-3's 70B; Qwen2.5-Math-72B has the Qwen2.5-72B body with a 4K context.
MENU_ARCHITECTURES: dict[str, ModelArch] = {
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B": _qwen2(64, 5120, 40, 27648, 131072),
    "Qwen/Qwen2.5-32B-Instruct": _qwen2(64, 5120, 40, 27648, 32768),
    "deepseek-ai/DeepSeek-R1-Distill-Llama-70B": _llama3_70b(),
    "meta-llama/Llama-3.3-70B-Instruct": _llama3_70b(),
    "Qwen/Qwen2.5-Math-72B-Instruct": _qwen2(80, 8192, 64, 29568, 4096),
}
