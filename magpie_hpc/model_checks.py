"""Launch-time checks of model folders: the architecture, the files, and that no code is needed.

Only JSON is read here (no torch, no transformers): these run on the login node before anything is
written or submitted, so a wrong folder is one line and exit 2 instead of a task failing after the
queue wait, or worse, a run that "works" on a randomly initialised head.

The package runs no code from a model folder. A config.json or tokenizer_config.json whose
`auto_map` names a custom class is refused, except ArmoRM's: the package implements that
architecture itself (engine/armorm.py) and never imports the file the auto_map names.
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import ConfigError
from .registry import ARMORM_ARCHITECTURE, ARMORM_GATING_PATTERN

REWARD_SUPPORTED = (
    f"{ARMORM_ARCHITECTURE} (ArmoRM, the package's own implementation) or a "
    "*ForSequenceClassification model with one label"
)
GENERATOR_SUPPORTED = "causal language models (*ForCausalLM) that vLLM serves without remote code"
_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
_TOKENIZER = ("tokenizer.json", "tokenizer.model", "vocab.json")


def _json(path: Path, field: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"{field}: {path} is not readable JSON ({exc}); pass an intact model folder") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{field}: {path} is not a JSON object; pass an intact model folder")
    return data


def model_config(folder: Path, field: str) -> dict:
    return _json(folder / "config.json", field)


def architecture(config: dict, folder: Path, field: str) -> str:
    archs = config.get("architectures")
    if not isinstance(archs, list) or not archs or not all(isinstance(a, str) for a in archs):
        raise ConfigError(
            f"{field}: {folder}/config.json names no architecture (`architectures`); "
            "pass a model folder saved by transformers"
        )
    return archs[0]


def _auto_map_classes(data: dict) -> list[str]:
    auto_map = data.get("auto_map") or {}
    if not isinstance(auto_map, dict):
        return [str(auto_map)]
    out: list[str] = []
    for value in auto_map.values():
        for ref in value if isinstance(value, list) else [value]:
            if ref:  # tokenizers list [slow, fast], either may be null
                out.append(str(ref))
    return out


def check_no_remote_code(folder: Path, field: str, arch: str) -> None:
    """Refuse a folder whose config or tokenizer names custom code, unless it is ArmoRM's class,
    which the package implements itself and never imports."""
    found: list[tuple[str, str]] = []
    config = model_config(folder, field)
    for ref in _auto_map_classes(config):
        if arch == ARMORM_ARCHITECTURE and ref.rsplit(".", 1)[-1] == ARMORM_ARCHITECTURE:
            continue
        found.append(("config.json", ref))
    tok_config = folder / "tokenizer_config.json"
    if tok_config.is_file():
        for ref in _auto_map_classes(_json(tok_config, field)):
            found.append(("tokenizer_config.json", ref))
    if found:
        where, ref = found[0]
        raise ConfigError(
            f"{field}: {folder} ({arch}) needs remote code ({where} auto_map -> {ref}); the package "
            f"never runs code from a model folder and supports {REWARD_SUPPORTED if field == 'reward_model' else GENERATOR_SUPPORTED}"
        )


def _check_files(folder: Path, field: str, *, safetensors_only: bool) -> None:
    weights = _WEIGHTS[:2] if safetensors_only else _WEIGHTS
    if not any((folder / name).is_file() for name in weights) and not (
        not safetensors_only and any(folder.glob("*.safetensors"))
    ):
        raise ConfigError(
            f"{field}: {folder} holds no weights ({' or '.join(weights)}); "
            "pass the complete model folder (download it with huggingface-cli download)"
        )
    if not any((folder / name).is_file() for name in _TOKENIZER):
        raise ConfigError(
            f"{field}: {folder} holds no tokenizer ({' or '.join(_TOKENIZER)}); "
            "pass the complete model folder (download it with huggingface-cli download)"
        )


def reward_kind(folder: str | Path, *, need_weights: bool = True) -> str:
    """'armorm' or 'classifier' for a reward model folder; ConfigError for anything else."""
    folder = Path(folder)
    field = "reward_model"
    config = model_config(folder, field)
    arch = architecture(config, folder, field)
    if arch == ARMORM_ARCHITECTURE:
        kind = "armorm"
    elif arch.endswith("ForSequenceClassification"):
        kind = "classifier"
        labels = config.get("num_labels", len(config.get("id2label") or {}) or 2)
        if labels != 1:
            raise ConfigError(
                f"reward_model: {folder} is a {arch} with {labels} labels, not a reward "
                f"model; the package supports {REWARD_SUPPORTED}"
            )
    else:
        raise ConfigError(
            f"reward_model: {folder} is a {arch}, not a reward model; the package supports {REWARD_SUPPORTED}"
        )
    check_no_remote_code(folder, field, arch)
    # Rows are batched with right padding: the reward is read where the padding starts.
    pad = config.get("pad_token_id")
    vocab = config.get("vocab_size")
    if not isinstance(pad, int) or isinstance(pad, bool) or pad < 0:
        raise ConfigError(
            f"reward_model: {folder}/config.json has no pad_token_id; batched scoring pads "
            "with the model's own pad id (ArmoRM: the [PAD] after the vocabulary); set it there"
        )
    if isinstance(vocab, int) and pad >= vocab:
        raise ConfigError(f"reward_model: {folder}/config.json pad_token_id {pad} is outside vocab_size {vocab}")
    if need_weights:
        _check_files(folder, field, safetensors_only=kind == "armorm")
    return kind


def check_generator(folder: str | Path, *, need_weights: bool = True) -> None:
    """A generator folder must be a causal LM without remote code."""
    folder = Path(folder)
    field = "model"
    config = model_config(folder, field)
    arch = architecture(config, folder, field)
    if not arch.endswith("ForCausalLM"):
        scorer = arch == ARMORM_ARCHITECTURE or arch.endswith("ForSequenceClassification")
        raise ConfigError(
            f"model: {folder} is a {arch}{' (a classifier)' if scorer else ''}, not a causal "
            f"language model; the package generates with {GENERATOR_SUPPORTED}"
        )
    check_no_remote_code(folder, field, arch)
    if need_weights:
        _check_files(folder, field, safetensors_only=False)


def check_armorm_template(folder: str | Path) -> None:
    """ArmoRM reads its gating input at the last assistant header: the reward model's own chat
    template must produce it for a (user, assistant) conversation, or no score can be computed."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
    probe = [{"role": "user", "content": "1 + 1?"}, {"role": "assistant", "content": "2"}]
    try:
        ids = tokenizer(tokenizer.apply_chat_template(probe, tokenize=False), add_special_tokens=False)["input_ids"]
    except Exception as exc:  # noqa: BLE001 - a template that cannot render is the same refusal
        raise ConfigError(f"reward_model: {folder}: its chat template cannot render a conversation ({exc})") from None
    pattern = tokenizer(ARMORM_GATING_PATTERN, add_special_tokens=False)["input_ids"]
    if not any(ids[i : i + len(pattern)] == pattern for i in range(len(ids) - len(pattern) + 1)):
        raise ConfigError(
            f"reward_model: {folder}: its chat template has no {ARMORM_GATING_PATTERN!r} before the answer, "
            f"where {ARMORM_ARCHITECTURE} reads its gating input; use the checkpoint's Llama-3 chat template"
        )
