"""Launch: validate everything, create the run directory, freeze run.json, hand the DAG to an executor.

All checks run before the run directory exists, so bad input leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

from . import __version__
from .config import RunConfig
from .errors import ConfigError
from .models import PromptBuilder, ResolvedModel, TemplateTexts, resolve_model, resolve_reward_model
from .plan import plan_summary
from .store import RunStore

# Room for the chat template around an instruction in the response prompt.
TEMPLATE_MARGIN = 64


def default_executor() -> str:
    return "slurm" if shutil.which("sbatch") else "local"


def run_label(cfg: RunConfig) -> str:
    if len(cfg.domains) == len(cfg.domain_settings):
        return "AllDomains"
    return "-".join(d.replace("_", " ").title().replace(" ", "") for d in cfg.domains)


def check_lengths(cfg: RunConfig, model: ResolvedModel) -> None:
    """max_model_len must hold prompt + max_tokens, or vLLM silently caps the output (defect 7)."""
    longest_out = max(cfg.multi_responses.max_tokens, *(cfg.domain(d).max_tokens_response for d in cfg.domains))
    longest_in = max(cfg.domain(d).max_tokens_instruction for d in cfg.domains) + TEMPLATE_MARGIN
    if model.max_model_len < longest_in + longest_out:
        raise ConfigError(
            f"engine.max_model_len: {model.max_model_len} cannot hold a {longest_in}-token prompt plus "
            f"{longest_out} new tokens; set engine.max_model_len >= {longest_in + longest_out} or lower max_tokens"
        )


def validate(cfg: RunConfig) -> tuple[ResolvedModel, str, PromptBuilder]:
    """Everything that can be checked on the login node, before anything is written."""
    from .roofline import choose_tensor_parallel

    choose_tensor_parallel(cfg)  # refuses a layout where not one full-length sequence fits
    model = resolve_model(cfg.model, cfg, need_weights=cfg.engine.kind == "vllm")
    reward = resolve_reward_model(cfg.reward_model, need_weights=cfg.engine.reward_kind == "transformers")
    check_lengths(cfg, model)
    prompts = PromptBuilder(model)
    for domain in cfg.domains:  # builds each prompt once: one BOS, template matches the registry
        prompts.magpie_prompt(cfg.domain(domain), cfg.instructions.max_difficulty)
    _ = prompts.stop_token_ids
    return model, reward, prompts


def check_writable(root: Path) -> None:
    probe = root
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"output_root: {root} is not writable; pass --output-root DIR you can write to")


def frozen_hardware(cfg: RunConfig):
    """The hardware section with the model's architecture filled in: every task (where the weights
    are, and config.json may say more than the menu table) then plans exactly the launch's shards."""
    from .config import ArchitectureConfig
    from .roofline import resolve_arch

    return cfg.hardware.model_copy(update={"architecture": ArchitectureConfig(**asdict(resolve_arch(cfg)))})


def create_run(cfg: RunConfig, model: ResolvedModel, reward_path: str, prompts: PromptBuilder | None = None) -> Path:
    check_writable(cfg.output_root)
    stamp = datetime.now().strftime("%Y%m%d_%H%M%S")
    base = f"{model.basename}_{run_label(cfg)}_{stamp}"
    cfg.output_root.mkdir(parents=True, exist_ok=True)
    for attempt in range(100):  # two launches in one second get distinct folders
        run_dir = cfg.output_root / (base if attempt == 0 else f"{base}_{attempt}")
        try:
            run_dir.mkdir()
            break
        except FileExistsError:
            continue
    else:
        raise ConfigError(f"output_root: could not create a new run folder in {cfg.output_root}")
    executor = cfg.executor or default_executor()
    frozen = cfg.model_copy(update={"executor": executor, "output_root": cfg.output_root.resolve(),
                                    "hardware": frozen_hardware(cfg)})
    RunStore(run_dir).write_manifest({
        "run_name": run_dir.name,
        "magpie_hpc_version": __version__,
        "created": datetime.now().astimezone().isoformat(timespec="seconds"),
        "config": frozen.model_dump(mode="json"),
        "model": {**asdict(model), "expected_stop_token_ids": list(model.expected_stop_token_ids)},
        "reward_model_path": reward_path,
        "templates": TemplateTexts.render(prompts or PromptBuilder(model), cfg).to_json(),
        "plan": plan_summary(cfg),
    })
    return run_dir.resolve()


# Fields that may differ between a launch and a relaunch into the same run directory.
_NOT_COMPARED = {"executor", "output_root"}


def config_differences(frozen: RunConfig, new: RunConfig) -> list[str]:
    """Dotted paths whose values differ, e.g. ['domain_settings.algebra.count: 10 -> 12']."""
    out: list[str] = []

    def walk(a, b, path: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b)):
                if not path and key in _NOT_COMPARED:
                    continue
                walk(a.get(key), b.get(key), f"{path}.{key}" if path else key)
        elif a != b:
            out.append(f"{path}: {a!r} -> {b!r}")

    walk(frozen.model_dump(mode="json"), new.model_dump(mode="json"), "")
    return out


def reconcile_config(run_dir: Path, new: RunConfig, *, force: bool) -> None:
    """Relaunching into a run directory: refuse a changed config unless --force; never one that
    changes the shard plan, since committed shards would no longer line up."""
    from .context import RunContext
    from .plan import plan_summary

    ctx = RunContext(run_dir)
    if new.hardware.architecture is None:  # the launch froze it; a relaunch plans with the same figures
        new = new.model_copy(update={"hardware": new.hardware.model_copy(
            update={"architecture": ctx.cfg.hardware.architecture})})
    diffs = config_differences(ctx.cfg, new)
    if not diffs:
        return
    shown = "; ".join(diffs[:5]) + (f"; and {len(diffs) - 5} more" if len(diffs) > 5 else "")
    if not force:
        raise ConfigError(f"config: differs from the run's run.json ({shown}); pass --force to apply it, or drop the changes")
    counts = lambda c: {d: c.domain(d).count for d in c.domains}  # noqa: E731
    if plan_summary(ctx.cfg) != plan_summary(new) or counts(ctx.cfg) != counts(new):
        raise ConfigError(f"config: the change alters the shard plan ({shown}); start a new run instead")
    manifest = dict(ctx.manifest)
    manifest.setdefault("config_history", []).append({"changed": datetime.now().isoformat(timespec="seconds"),
                                                      "differences": diffs})
    manifest["config"] = new.model_copy(update={"executor": ctx.cfg.executor,
                                                "output_root": ctx.cfg.output_root}).model_dump(mode="json")
    manifest["templates"] = TemplateTexts.render(ctx.prompts, new).to_json()  # a domain text may have changed
    RunStore(run_dir).write_manifest(manifest)
