"""Memory and roofline planner: how a model fits a GPU and how fast it decodes there.

For each tensor-parallel size (1, 2, 4, 8) and generation stage this computes, from the model's
architecture and the GPU's memory and bandwidth:

- weights per GPU: the bf16 weights split over the tensor-parallel group;
- KV-cache tokens: what vLLM would report as "GPU KV cache size": device memory x
  `gpu_memory_utilization`, less the weights, less OVERHEAD_GIB (activations of one prefill batch,
  the sampler's logits, CUDA graphs, NCCL and cuBLAS workspaces; plus TP_BUFFER_GIB of all-reduce
  buffers when tensor parallel), divided by the KV bytes one token takes on one GPU, in 16-token
  blocks;
- concurrent sequences: KV-cache tokens over the stage's expected sequence length (prompt + mean
  output: a sequence is admitted only if it would fit at its expected end), capped at MAX_NUM_SEQS;
  this becomes vLLM's `max_num_seqs`;
- decode tokens/s per GPU: each decode step reads the GPU's weights and the KV of every running
  sequence (at its mean context, prompt + half the mean output) from memory at
  BANDWIDTH_EFFICIENCY of the peak, or is bound by compute (2 FLOPs per parameter per token at
  COMPUTE_EFFICIENCY of the dense peak), whichever is slower; tensor parallel adds two all-reduces
  per layer (a latency plus the activations over the GPUs' interconnect). Prefill is left out: the
  stages' prompts are short beside their outputs and share one prefix.

The layout chosen is the one with the most output tokens per GPU-hour over the run's generation
stages that fits a node; a larger group has to beat a smaller one by TP_MIN_GAIN, since a task
that needs more GPUs on one node waits longer in the queue and loses more to a node failure.
A layout where not even one `max_model_len` sequence fits is refused (vLLM would refuse to start).

This module is arithmetic on numbers: it imports no torch and reads model folders only as JSON.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import ConfigError
from .hardware import GIB, GpuSpec, ModelArch
from .model_arch import dtype_bytes, resolve_arch, resolve_gpu
from .pipeline import generation_stages, stage as stage_spec

TENSOR_PARALLEL_SIZES = (1, 2, 4, 8)
OVERHEAD_GIB = 2.0
TP_BUFFER_GIB = 0.5
BLOCK_TOKENS = 16  # vLLM's KV block size on CUDA
MAX_NUM_SEQS = 1024
BANDWIDTH_EFFICIENCY = 0.8  # share of peak HBM bandwidth vLLM's decode kernels reach
COMPUTE_EFFICIENCY = 0.5  # share of dense bf16 peak that decode GEMMs reach
ALLREDUCE_LATENCY_S = 10e-6  # one small all-reduce between GPUs of a node (NVLink)
TP_MIN_GAIN = 0.10
# Tokens of the Magpie pre-query prompt (system text with the domain focus, chat markers); the
# response prompt is the instruction plus RESPONSE_TEMPLATE_TOKENS (launch.TEMPLATE_MARGIN).
MAGPIE_PROMPT_TOKENS = 160
RESPONSE_TEMPLATE_TOKENS = 64

# ---------------------------------------------------------------------------------- the roofline


@dataclass(frozen=True)
class StageLengths:
    prompt_tokens: float  # mean prompt
    output_tokens: float  # mean output

    @property
    def expected(self) -> float:
        return self.prompt_tokens + self.output_tokens

    @property
    def mean_context(self) -> float:
        return self.prompt_tokens + self.output_tokens / 2


@dataclass(frozen=True)
class Layout:
    tensor_parallel_size: int
    weights_gib_per_gpu: float
    kv_cache_tokens: int
    max_num_seqs: int
    tokens_per_second_per_gpu: float
    step_seconds: float
    fits: bool  # one max_model_len sequence fits the KV cache

    def to_json(self) -> dict:
        return asdict(self)


def kv_bytes_per_token(arch: ModelArch, tp: int, kv_dtype_bytes: int) -> int:
    """K and V of every layer for one token on one GPU; heads are split over the group (replicated
    where the group is larger than the KV heads, as vLLM does)."""
    heads_per_gpu = max(1, arch.kv_heads // tp)
    return 2 * arch.layers * heads_per_gpu * arch.head_dim * kv_dtype_bytes


def kv_cache_tokens(arch: ModelArch, gpu: GpuSpec, tp: int, utilization: float, kv_dtype_bytes: int) -> int:
    overhead = (OVERHEAD_GIB + (TP_BUFFER_GIB if tp > 1 else 0.0)) * GIB
    free = gpu.memory_bytes * utilization - arch.weight_bytes / tp - overhead
    block = kv_bytes_per_token(arch, tp, kv_dtype_bytes) * BLOCK_TOKENS
    return max(0, int(free // block)) * BLOCK_TOKENS


def layout(
    arch: ModelArch,
    gpu: GpuSpec,
    tp: int,
    lengths: StageLengths,
    *,
    utilization: float,
    kv_dtype_bytes: int,
    max_model_len: int,
) -> Layout:
    kv_tokens = kv_cache_tokens(arch, gpu, tp, utilization, kv_dtype_bytes)
    fits = kv_tokens >= max_model_len
    seqs = min(MAX_NUM_SEQS, int(kv_tokens // lengths.expected)) if fits else 0
    if seqs < 1:
        return Layout(tp, round(arch.weight_bytes / tp / GIB, 2), kv_tokens, 0, 0.0, math.inf, fits)
    read = arch.weight_bytes / tp + seqs * lengths.mean_context * kv_bytes_per_token(arch, tp, kv_dtype_bytes)
    memory_s = read / (gpu.bandwidth_tbs * 1e12 * BANDWIDTH_EFFICIENCY)
    compute_s = 2 * arch.parameters * seqs / tp / (gpu.bf16_tflops * 1e12 * COMPUTE_EFFICIENCY)
    comm_s = 0.0
    if tp > 1:  # two all-reduces per layer of the step's activations (ring: 2(tp-1)/tp of them cross)
        moved = 2 * (tp - 1) / tp * seqs * arch.hidden_size * arch.dtype_bytes
        comm_s = 2 * arch.layers * (ALLREDUCE_LATENCY_S + moved / (gpu.interconnect_gbs * 1e9))
    step = max(memory_s, compute_s) + comm_s
    return Layout(tp, round(arch.weight_bytes / tp / GIB, 2), kv_tokens, seqs, seqs / step / tp, step, fits)


def candidate_sizes(arch: ModelArch, gpus_per_node: int) -> list[int]:
    """Group sizes vLLM accepts (attention heads divide evenly) that fit on one node."""
    return [tp for tp in TENSOR_PARALLEL_SIZES if tp <= gpus_per_node and arch.attention_heads % tp == 0]


# -------------------------------------------------------------------------- a run's configuration


def _entry(cfg):
    by_hub = {e.hub_id: e for e in cfg.models.values()}
    return cfg.models.get(cfg.model) or by_hub.get(cfg.model)


def model_key(cfg) -> str:
    """How calibrated figures name the model: its hub id, or the model folder's absolute path."""
    entry = _entry(cfg)
    if entry is not None:
        return entry.hub_id
    path = Path(cfg.model).expanduser()
    return str(path.resolve()) if path.exists() else cfg.model


def max_model_len(cfg) -> int:
    entry = _entry(cfg)
    return cfg.engine.max_model_len or (entry.max_model_len if entry is not None else 8192)


def explicit_tensor_parallel(cfg) -> int | None:
    entry = _entry(cfg)
    return cfg.engine.tensor_parallel_size or (entry.tensor_parallel_size if entry is not None else None)


def stage_lengths(cfg, stage: str, domain: str) -> StageLengths:
    d, t = cfg.domain(domain), cfg.throughput
    instruction = d.max_tokens_instruction * t.instruction_fill
    spec = stage_spec(stage)
    if not spec.responds:  # an instruction: the Magpie pre-query template is the whole prompt
        return StageLengths(MAGPIE_PROMPT_TOKENS, instruction)
    return StageLengths(instruction + RESPONSE_TEMPLATE_TOKENS, spec.max_tokens(cfg, domain) * t.response_fill)


def stage_layout(cfg, stage: str, domain: str, tp: int) -> Layout:
    return layout(
        resolve_arch(cfg),
        resolve_gpu(cfg),
        tp,
        stage_lengths(cfg, stage, domain),
        utilization=cfg.engine.gpu_memory_utilization,
        kv_dtype_bytes=dtype_bytes(cfg.engine.dtype),
        max_model_len=max_model_len(cfg),
    )


def _stage_tokens(cfg, stage: str, domain: str) -> float:
    from .plan import estimated_tokens

    return estimated_tokens(cfg, stage, domain)


def generation_hours(cfg, tp: int) -> float:
    """GPU-hours of the run's generation stages at one group size (inf where a stage cannot run)."""
    hours = 0.0
    for stage in (s.name for s in generation_stages()):
        for domain in cfg.domains:
            rate = stage_layout(cfg, stage, domain, tp).tokens_per_second_per_gpu
            if rate <= 0:
                return math.inf
            hours += _stage_tokens(cfg, stage, domain) / rate / 3600
    return hours


@dataclass(frozen=True)
class Choice:
    tensor_parallel_size: int
    best: int  # the planner's own pick
    explicit: bool
    hours: dict[int, float]  # generation GPU-hours per candidate group size

    @property
    def note(self) -> str | None:
        if not self.explicit or self.best == self.tensor_parallel_size:
            return None
        mine, best = self.hours[self.tensor_parallel_size], self.hours[self.best]
        return (
            f"tensor_parallel_size {self.tensor_parallel_size} (set in the config) plans {mine:,.1f} generation "
            f"GPU-hours; {self.best} would plan {best:,.1f} ({mine / best - 1:+.0%} at the configured layout)"
        )


def choose_tensor_parallel(cfg) -> Choice:
    """The group size the run uses: the configured one if any (refused where nothing fits), else
    the one with the fewest generation GPU-hours, a larger one only for TP_MIN_GAIN fewer."""
    arch = resolve_arch(cfg)
    per_node = cfg.hardware.gpus_per_node
    sizes = candidate_sizes(arch, per_node)
    hours = {tp: generation_hours(cfg, tp) for tp in sizes}
    fitting = [tp for tp in sizes if math.isfinite(hours[tp])]
    best = None
    for tp in fitting:
        if best is None or hours[tp] < hours[best] * (1 - TP_MIN_GAIN):
            best = tp
    gpu, length = resolve_gpu(cfg).name, max_model_len(cfg)
    explicit = explicit_tensor_parallel(cfg)
    if explicit is not None:
        if explicit not in hours:
            hours[explicit] = generation_hours(cfg, explicit)
        if not math.isfinite(hours[explicit]):
            kv = kv_cache_tokens(
                arch, resolve_gpu(cfg), explicit, cfg.engine.gpu_memory_utilization, dtype_bytes(cfg.engine.dtype)
            )
            hint = (
                f"set engine.tensor_parallel_size = {best}"
                if best is not None
                else "choose a GPU with more memory (hardware.gpu)"
            )
            raise ConfigError(
                f"engine.tensor_parallel_size: {explicit} x {gpu} holds {kv:,} KV-cache tokens, less than "
                f"one {length}-token sequence; {hint} (a layout that fits)"
            )
        return Choice(explicit, best if best is not None else explicit, True, hours)
    if best is None:
        raise ConfigError(
            f"hardware.gpu: {arch.weight_bytes / GIB:.0f} GiB of weights leave no room for one "
            f"{length}-token sequence on up to {max(sizes, default=1)} x {gpu} (hardware.gpus_per_node="
            f"{per_node}); choose bigger GPUs or nodes, or lower engine.max_model_len"
        )
    return Choice(best, best, False, hours)


def planned_max_num_seqs(cfg, stage: str, domain: str) -> int | None:
    """vLLM's max_num_seqs for a stage: the configured one, else the planner's sequences."""
    if cfg.engine.max_num_seqs is not None:
        return cfg.engine.max_num_seqs
    if not stage_spec(stage).generates:
        return None
    seqs = stage_layout(cfg, stage, domain, choose_tensor_parallel(cfg).tensor_parallel_size).max_num_seqs
    return seqs or None
