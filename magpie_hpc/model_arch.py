"""What the planner knows of the run's model and GPU, read without loading anything: the
architecture from the checkpoint's own JSON (config.json, the safetensors index or headers), the
menu table (hardware.py) for a model not on this machine, or the config's `[hardware.architecture]`;
the GPU from the table or the config's own figures. Model folders are read only as JSON.
"""

from __future__ import annotations

import json
import math
import struct
from functools import lru_cache
from pathlib import Path

from .errors import ConfigError
from .hardware import GPUS, MENU_ARCHITECTURES, GpuSpec, ModelArch, dense_parameters, find_gpu

_DTYPE_BYTES = {
    "bfloat16": 2,
    "float16": 2,
    "half": 2,
    "float32": 4,
    "float": 4,
    "auto": 2,
    "fp8": 1,
    "float8_e4m3fn": 1,
    "int8": 1,
}


def dtype_bytes(name: str | None) -> int:
    return _DTYPE_BYTES.get(str(name or "bfloat16").lower().removeprefix("torch."), 2)


# ---------------------------------------------------------------------------- model architecture


def _safetensors_parameters(folder: Path) -> tuple[int, int] | None:
    """(parameters, weight bytes) from the safetensors index's total_size, else from the headers'
    shapes (an 8-byte length and a JSON header per file: nothing else is read)."""
    index = folder / "model.safetensors.index.json"
    files = sorted(folder.glob("*.safetensors"))
    if index.is_file():
        total = json.loads(index.read_text()).get("metadata", {}).get("total_size")
        if total:
            return -1, int(total)  # bytes; parameters follow from the dtype
    if not files:
        return None
    params = size = 0
    for path in files:
        with path.open("rb") as fh:
            (length,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(length))
        for name, meta in header.items():
            if name == "__metadata__":
                continue
            n = math.prod(meta["shape"])
            params += n
            size += n * dtype_bytes(
                {"BF16": "bfloat16", "F16": "float16", "F32": "float32", "F8_E4M3": "fp8", "I8": "int8"}.get(
                    meta["dtype"], "bfloat16"
                )
            )
    return params, size


@lru_cache(maxsize=32)
def arch_from_folder(folder: str) -> ModelArch:
    """A model folder's config.json (and safetensors sizes) -> ModelArch."""
    path = Path(folder)
    try:
        c = json.loads((path / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(
            f"model: cannot read {path / 'config.json'} ({exc}); pass a model folder with a config.json"
        ) from None
    c = {**c.get("text_config", {}), **c}
    try:
        layers, hidden, heads = int(c["num_hidden_layers"]), int(c["hidden_size"]), int(c["num_attention_heads"])
        vocab, inter = int(c["vocab_size"]), int(c.get("intermediate_size") or 4 * hidden)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"model: {path / 'config.json'} lacks {exc}; the planner needs layers, hidden size, "
            "heads and vocabulary (or set [hardware] generation figures in --config)"
        ) from None
    kv = int(c.get("num_key_value_heads") or heads)
    head_dim = int(c.get("head_dim") or hidden // heads)
    nbytes = dtype_bytes(c.get("torch_dtype") or c.get("dtype"))
    found = _safetensors_parameters(path)
    if found is None:
        params = dense_parameters(
            layers,
            hidden,
            heads,
            kv,
            head_dim,
            vocab,
            inter,
            qkv_bias=c.get("model_type") == "qwen2",
            tied=bool(c.get("tie_word_embeddings")),
        )
    else:
        params = found[0] if found[0] > 0 else found[1] // nbytes
    return ModelArch(
        layers, hidden, heads, kv, head_dim, vocab, inter, params, nbytes, c.get("max_position_embeddings")
    )


@lru_cache(maxsize=32)
def _cached_folder(hub_id: str) -> str | None:
    from .models import _hub_cached  # one cache lookup per process: plans are made many times

    return _hub_cached(hub_id)


def resolve_arch(cfg) -> ModelArch:
    """The architecture the plan uses: frozen in run.json (hardware.architecture), else the model
    folder (local path or the Hugging Face cache), else the menu table (a plan on a login node
    before the weights are downloaded)."""
    frozen = cfg.hardware.architecture
    if frozen is not None:
        return ModelArch(**frozen.model_dump())
    by_hub = {e.hub_id: e for e in cfg.models.values()}
    entry = cfg.models.get(cfg.model) or by_hub.get(cfg.model)
    if entry is not None:
        local = _cached_folder(entry.hub_id)
        if local is not None and (Path(local) / "config.json").is_file():
            return arch_from_folder(local)
        if entry.hub_id in MENU_ARCHITECTURES:
            return MENU_ARCHITECTURES[entry.hub_id]
        raise ConfigError(
            f"model: no config.json for {entry.hub_id} here; download it, or give its figures in "
            "[hardware.architecture] of a --config file"
        )
    path = Path(cfg.model).expanduser()
    if (path / "config.json").is_file():
        return arch_from_folder(str(path.resolve()))
    if cfg.model in MENU_ARCHITECTURES:
        return MENU_ARCHITECTURES[cfg.model]
    raise ConfigError(
        f"model: no architecture known for {cfg.model}; pass a model folder or give its figures in "
        "[hardware.architecture] of a --config file"
    )


def resolve_gpu(cfg) -> GpuSpec:
    h = cfg.hardware
    base = find_gpu(h.gpu)
    if base is None and (h.gpu_memory_gib is None or h.memory_bandwidth_tbs is None):
        raise ConfigError(
            f"hardware.gpu: unknown GPU {h.gpu!r}; choose from {', '.join(GPUS)} or give "
            "hardware.gpu_memory_gib and hardware.memory_bandwidth_tbs"
        )
    base = base or GpuSpec(h.gpu, 0.0, 0.0, 312.0, 230.0)
    return GpuSpec(
        base.name,
        h.gpu_memory_gib or base.memory_gib,
        h.memory_bandwidth_tbs or base.bandwidth_tbs,
        base.bf16_tflops,
        base.interconnect_gbs,
    )
