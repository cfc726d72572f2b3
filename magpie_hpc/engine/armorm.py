"""The package's own implementation of ArmoRM (`LlamaForRewardModelWithGating`).

RLHFlow/ArmoRM-Llama3-8B-v0.1 ships its architecture as remote code (`modeling_custom.py`, named by
`auto_map`). That file no longer imports under transformers 5 (it needs `LLAMA_INPUTS_DOCSTRING`),
and executing code from a model folder is what the package never does. So the architecture is
rebuilt here on transformers' own `LlamaModel`, with the checkpoint's parameter names, and its
safetensors are loaded strictly: a missing, unexpected or misshapen tensor is an error naming it.

The model, as published:

- `model`: a Llama backbone; `regression_layer`: hidden -> `num_objectives` (19), no bias, read at
  the last token of the conversation: 19 absolute-rating rewards.
- `gating`: `gating_n_hidden` linear layers of `gating_hidden_dim` with ReLU, then a linear layer to
  the objectives; softmax at `gating_temperature`, times the learned `gating.logit_scale`. Its input
  is the hidden state at the start of the last `<|eot_id|><|start_header_id|>assistant
  <|end_header_id|>\\n\\n` (the end of the prompt), so the mixture depends on the prompt only.
- `reward_transform_matrix` (objectives x objectives, a parameter in the checkpoint): score =
  sum(gating * (rewards @ transform)).

Nothing here imports or reads the checkpoint's Python files.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from ..errors import ConfigError

# GATING_PATTERN_TEXT: the turn boundary the gating network reads (end of the user turn, assistant
# header). Callers encode it with the model's own tokenizer, never as hard-coded ids.
from ..registry import ARMORM_ARCHITECTURE as ARCHITECTURE
from ..registry import ARMORM_GATING_PATTERN as GATING_PATTERN_TEXT  # noqa: F401 - callers import it from here

# The published checkpoint's defaults for fields its config.json may leave out.
DEFAULT_NUM_OBJECTIVES = 19
DEFAULT_GATING_TEMPERATURE = 10.0
DEFAULT_GATING_HIDDEN_DIM = 1024
DEFAULT_GATING_N_HIDDEN = 3


class WeightsMismatch(ConfigError):
    """The checkpoint's tensors are not exactly the ones the architecture has (a bad model folder:
    one line, whether at load in a task or in a test)."""


class GatingNetwork(nn.Module):
    """Prompt-conditioned mixture weights over the objectives (`gating.*` in the checkpoint)."""

    def __init__(self, in_features: int, out_features: int, *, hidden_dim: int, n_hidden: int, temperature: float):
        super().__init__()
        self.temperature = float(temperature)
        # Learned in the checkpoint; 1.0 only until the weights are loaded.
        self.logit_scale = nn.Parameter(torch.ones(1))
        sizes = [in_features] + [hidden_dim] * n_hidden
        self.layers = nn.ModuleList(
            [nn.Linear(a, b) for a, b in zip(sizes, sizes[1:])] + [nn.Linear(sizes[-1], out_features)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        *hidden, last = self.layers
        for layer in hidden:
            x = torch.relu(layer(x))
        weights = torch.softmax(last(x) / self.temperature, dim=-1)
        return weights * self.logit_scale[0]


class ArmoRMRewardModel(nn.Module):
    """Backbone + regression layer + gating network + transform matrix, named as in the checkpoint."""

    def __init__(self, config):
        super().__init__()
        from transformers import LlamaModel

        self.config = config
        n_obj = int(getattr(config, "num_objectives", DEFAULT_NUM_OBJECTIVES))
        self.num_objectives = n_obj
        self.model = LlamaModel(config)
        self.regression_layer = nn.Linear(config.hidden_size, n_obj, bias=False)
        self.gating = GatingNetwork(
            config.hidden_size,
            n_obj,
            hidden_dim=int(getattr(config, "gating_hidden_dim", DEFAULT_GATING_HIDDEN_DIM)),
            n_hidden=int(getattr(config, "gating_n_hidden", DEFAULT_GATING_N_HIDDEN)),
            temperature=float(getattr(config, "gating_temperature", DEFAULT_GATING_TEMPERATURE)),
        )
        self.reward_transform_matrix = nn.Parameter(torch.eye(n_obj), requires_grad=False)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, gating_positions: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Right-padded rows; `gating_positions[i]` is where the last assistant header of row i starts."""
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        rows = torch.arange(input_ids.shape[0], device=hidden.device)
        # Right padding: the last real token is at (number of real tokens) - 1, whatever the pad id.
        last = attention_mask.sum(dim=1).to(hidden.device) - 1
        # The heads run in float32: 19 numbers per row, and bf16 would round the final sum.
        head_dtype = self.regression_layer.weight.dtype
        rewards = self.regression_layer(hidden[rows, last].to(head_dtype))
        gating = self.gating(hidden[rows, gating_positions.to(hidden.device)].to(head_dtype))
        score = (gating * (rewards @ self.reward_transform_matrix)).sum(dim=1)
        return {"rewards": rewards, "gating": gating, "score": score}


def gating_position(ids: Sequence[int], pattern: Sequence[int]) -> int | None:
    """Start of the last occurrence of `pattern` in `ids`, or None."""
    n = len(pattern)
    pattern = list(pattern)
    for start in range(len(ids) - n, -1, -1):
        if list(ids[start : start + n]) == pattern:
            return start
    return None


def _weight_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        return [folder / name for name in sorted(set(weight_map.values()))]
    single = folder / "model.safetensors"
    if single.is_file():
        return [single]
    raise WeightsMismatch(f"reward_model: {folder} has no model.safetensors nor model.safetensors.index.json")


def _llama_config(config_dict: dict):
    from transformers import LlamaConfig

    # Only the JSON is read: auto_map stays an inert field, nothing it names is imported.
    config = LlamaConfig.from_dict({k: v for k, v in config_dict.items() if k != "auto_map"})
    config._attn_implementation = "sdpa"
    return config


def _skeleton(folder: Path) -> tuple[ArmoRMRewardModel, object]:
    """The architecture on the meta device: every parameter's name and shape, no memory."""
    config = _llama_config(json.loads((folder / "config.json").read_text(encoding="utf-8")))
    with torch.device("meta"):
        return ArmoRMRewardModel(config), config


def _check_inventory(folder: Path, expected: dict[str, tuple[int, ...]]) -> dict[str, Path]:
    """Each tensor's file, after checking names and shapes against the architecture (headers only)."""
    from safetensors import safe_open

    where: dict[str, Path] = {}
    unexpected: list[str] = []
    mismatched: list[str] = []
    for path in _weight_files(folder):
        with safe_open(str(path), framework="pt", device="cpu") as f:
            for key in f.keys():
                if key not in expected:
                    unexpected.append(key)
                    continue
                shape = tuple(f.get_slice(key).get_shape())
                if shape != expected[key]:
                    mismatched.append(f"{key} {shape} != {expected[key]}")
                where[key] = path
    missing = sorted(set(expected) - set(where))
    problems = []
    if missing:
        problems.append("missing " + ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else ""))
    if unexpected:
        problems.append("unexpected " + ", ".join(sorted(unexpected)[:10]) + (" ..." if len(unexpected) > 10 else ""))
    if mismatched:
        problems.append("wrong shape " + ", ".join(mismatched[:10]))
    if problems:
        raise WeightsMismatch(f"reward_model: {folder}: weights do not match {ARCHITECTURE}: " + "; ".join(problems))
    return where


def check_weights(folder: str | Path) -> None:
    """Launch-time strictness: the safetensors hold exactly the architecture's tensors (reads the
    headers only, so it takes a second on the login node even for the 8B checkpoint)."""
    folder = Path(folder)
    model, _ = _skeleton(folder)
    _check_inventory(folder, {name: tuple(t.shape) for name, t in model.state_dict().items()})


def load_armorm(folder: str | Path, *, dtype: torch.dtype, device: str) -> ArmoRMRewardModel:
    """Build the architecture without allocating, then fill every tensor from the safetensors.

    Strict: each tensor of the architecture must be in the files with its exact shape, and the
    files may hold nothing else; otherwise WeightsMismatch names the keys.
    """
    from safetensors import safe_open
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    folder = Path(folder)
    model, config = _skeleton(folder)
    where = _check_inventory(folder, {name: tuple(t.shape) for name, t in model.state_dict().items()})
    # The heads run in float32 (19 numbers per row); the backbone in the engine's dtype.
    head = ("regression_layer.", "gating.", "reward_transform_matrix")
    state: dict[str, torch.Tensor] = {}
    for path in sorted(set(where.values())):
        with safe_open(str(path), framework="pt", device="cpu") as f:
            for key in (k for k, p in where.items() if p == path):
                target = torch.float32 if key.startswith(head) else dtype
                state[key] = f.get_tensor(key).to(device=device, dtype=target)
    model.load_state_dict(state, strict=True, assign=True)
    # The rotary frequencies are not in the checkpoint (non-persistent buffers): compute them for real.
    model.model.rotary_emb = LlamaRotaryEmbedding(config=config).to(device)
    model.reward_transform_matrix.requires_grad_(False)
    return model.eval()
