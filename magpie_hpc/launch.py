"""Launch: validate everything, create the run directory, freeze run.json, hand the DAG to an executor.

All checks run before the run directory exists, so bad input leaves nothing behind. `launch_run`,
`resume_run` and `dry_run` are what the CLI's commands call; they work the same for every executor.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import asdict, replace
from datetime import datetime
from pathlib import Path

from . import __version__
from .config import ArchitectureConfig, HardwareConfig, RunConfig
from .context import RunContext
from .damage import check_run_files
from .engine_version import engine_check
from .errors import ConfigError
from .executors import LaunchResult, Notify, PlanDescription, default_executor, get_executor, silent
from .model_checks import check_generator
from .models import (
    PromptBuilder,
    ResolvedModel,
    TemplateTexts,
    resolve_model,
    resolve_reward_model,
    write_engine_tokenizer,
)
from .plan import plan_summary
from .provenance import collect as collect_provenance
from .provenance import reconcile_provenance
from .model_arch import resolve_arch
from .roofline import choose_tensor_parallel
from .store import RunStore

# Room for the chat template around an instruction in the response prompt.
TEMPLATE_MARGIN = 64


def launch_run(cfg: RunConfig, notify: Notify = silent) -> LaunchResult:
    """A new run of `cfg`: every check, then the run directory, then the executor's launch. A launch
    that fails before any work was recorded leaves no folder behind."""
    model, reward, prompts = validate(cfg)
    executor = get_executor(cfg.executor)
    executor.preflight(cfg)
    created = _missing_parents(cfg.output_root)
    run_dir = create_run(cfg, model, reward, prompts)
    notify(f"run directory: {run_dir}")
    for line in temperature_warnings(cfg, model):  # once every check passed: bad input stays one line
        notify(f"warning: {line}")
    try:
        return executor.launch(run_dir)
    except BaseException:
        discard_run(run_dir, created)  # nothing ran or was submitted: leave no folder behind
        raise


def resume_run(
    run_dir: Path, cfg: RunConfig | None = None, *, force: bool = False, notify: Notify = silent
) -> LaunchResult:
    """Carry on a run with the executor it was launched with. With `cfg` (`launch --resume`), the
    config is first reconciled with the run's run.json (a change only with `force`)."""
    if cfg is not None:
        reconcile_config(run_dir, cfg, force=force)
    ctx = RunContext(run_dir)
    check_run_files(ctx)  # a damaged run file: one line naming it (exit 2), nothing changed
    return get_executor(ctx.cfg.executor).resume(ctx.run_dir, notify)


def dry_run(cfg: RunConfig, notify: Notify = silent) -> PlanDescription:
    """The plan of a run of `cfg`; checks that fail (e.g. model not downloaded yet) are warnings here."""
    description = get_executor(cfg.executor).describe(cfg)
    try:
        return replace(description, model=validate(cfg)[0].name)
    except ConfigError as exc:
        notify(f"warning: {exc}")
        return description


def run_label(cfg: RunConfig) -> str:
    if len(cfg.domains) == len(cfg.domain_settings):
        return "AllDomains"
    return "-".join(d.replace("_", " ").title().replace(" ", "") for d in cfg.domains)


def check_lengths(cfg: RunConfig, model: ResolvedModel) -> None:
    """max_model_len must hold prompt + max_tokens, or vLLM silently caps the output (defect 7),
    and fit the model's context, or vLLM refuses to start (Qwen2.5-Math-72B: 4,096)."""
    longest_out = max(cfg.multi_responses.max_tokens, *(cfg.domain(d).max_tokens_response for d in cfg.domains))
    longest_in = max(cfg.domain(d).max_tokens_instruction for d in cfg.domains) + TEMPLATE_MARGIN
    context = model.context_length
    if context is not None and model.max_model_len > context:
        raise ConfigError(
            f"engine.max_model_len: {model.max_model_len} exceeds the {context}-token context of {model.name} "
            f"(max_position_embeddings in its config.json); set engine.max_model_len <= {context}"
        )
    if context is not None and longest_in + longest_out > context:
        raise ConfigError(
            f"max_tokens: a {longest_in}-token prompt plus {longest_out} new tokens exceeds the {context}-token "
            f"context of {model.name}; lower max_tokens_response / multi_responses.max_tokens (and "
            f"max_tokens_instruction) so they sum to <= {context - TEMPLATE_MARGIN}"
        )
    if model.max_model_len < longest_in + longest_out:
        raise ConfigError(
            f"engine.max_model_len: {model.max_model_len} cannot hold a {longest_in}-token prompt plus "
            f"{longest_out} new tokens; set engine.max_model_len >= {longest_in + longest_out} or lower max_tokens"
        )


# DeepSeek's guidance for the R1 family: temperature 0.5-0.7 "to prevent endless repetitions".
REASONING_MIN_TEMPERATURE = 0.5


def temperature_warnings(cfg: RunConfig, model: ResolvedModel) -> list[str]:
    """Lines to print at launch when a reasoning model samples below its guidance. The seed's response
    temperatures (0.0-0.05) stay the defaults; the loop stop is what keeps them affordable."""
    if model.family != "deepseek_r1" or cfg.engine.kind != "vllm":  # the synthetic engine never loops
        return []
    low = {
        d: cfg.domain(d).response_temperature
        for d in cfg.domains
        if cfg.domain(d).response_temperature < REASONING_MIN_TEMPERATURE
    }
    if cfg.multi_responses.temperature < REASONING_MIN_TEMPERATURE:
        low["preference responses"] = cfg.multi_responses.temperature
    if not low:
        return []
    shown = ", ".join(f"{k} {v:g}" for k, v in low.items())
    stop = "on" if cfg.responses.repetition_detection.enabled else "OFF"
    return [
        f"{model.name} is a reasoning model (R1 family) sampled below DeepSeek's {REASONING_MIN_TEMPERATURE:g}-0.7 "
        f"({shown}): expect responses that loop until max_tokens; the loop stop "
        f"([responses.repetition_detection]) is {stop}, and the card counts the loops"
    ]


def validate(cfg: RunConfig) -> tuple[ResolvedModel, str, PromptBuilder]:
    """Everything that can be checked on the login node, before anything is written."""
    choose_tensor_parallel(cfg)  # refuses a layout where not one full-length sequence fits
    need_generator = cfg.engine.kind == "vllm"
    local = Path(cfg.model).expanduser()
    menu = cfg.model in cfg.models or cfg.model in {e.hub_id for e in cfg.models.values()}
    if not menu and (local / "config.json").is_file():  # a folder: before resolve_model loads its tokenizer
        check_generator(local, need_weights=need_generator)
    model = resolve_model(cfg.model, cfg, need_weights=need_generator)
    if (Path(model.path) / "config.json").is_file():  # a menu entry's cached snapshot
        check_generator(model.path, need_weights=need_generator)
    reward = resolve_reward_model(cfg.reward_model, need_weights=cfg.engine.reward_kind == "transformers")
    check_lengths(cfg, model)
    engine_check(cfg, where="launch")
    if cfg.quality.decontamination_files:  # compute nodes cannot download them: each must be here now
        from .quality.decontam import check_benchmark_files

        check_benchmark_files(cfg.quality.decontamination_files, cfg.quality.decontamination_field)
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


# The run folder's name becomes a path, the SLURM job names and log names: a model folder named
# with a newline or a slash must not carry them there.
_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


def safe_run_base(model: ResolvedModel, cfg: RunConfig) -> str:
    name = _UNSAFE_NAME_CHARS.sub("-", model.basename).strip(".-") or "model"
    return f"{name[:64]}_{run_label(cfg)}"


def _missing_parents(path: Path) -> list[Path]:
    """The folders `path.mkdir(parents=True)` would create, deepest first."""
    missing, probe = [], Path(path).absolute()
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    return missing


def discard_run(run_dir: Path, created_parents: list[Path] = ()) -> None:
    """A launch that failed before any work was recorded leaves nothing behind: the run folder (its
    run.json and submitit's files of a submission that did not happen) and the output folders it
    created. A run with jobs.jsonl or work/ is kept: it is resumable."""
    run_dir = Path(run_dir)
    if (run_dir / "jobs.jsonl").exists() or (run_dir / "work").exists():
        return
    shutil.rmtree(run_dir, ignore_errors=True)
    for parent in created_parents:
        try:
            parent.rmdir()  # only if empty: never anything another process put there
        except OSError:
            break


def frozen_hardware(cfg: RunConfig) -> HardwareConfig:
    """The hardware section with the model's architecture filled in: every task (where the weights
    are, and config.json may say more than the menu table) then plans exactly the launch's shards."""
    return cfg.hardware.model_copy(update={"architecture": ArchitectureConfig(**asdict(resolve_arch(cfg)))})


def create_run(cfg: RunConfig, model: ResolvedModel, reward_path: str, prompts: PromptBuilder | None = None) -> Path:
    check_writable(cfg.output_root)
    stamp = datetime.now().strftime("%Y%m%d_%H%M%S")
    base = f"{safe_run_base(model, cfg)}_{stamp}"
    created = _missing_parents(cfg.output_root)
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
    try:
        _write_manifest(cfg, model, reward_path, prompts, run_dir)
    except BaseException:
        discard_run(run_dir, created)
        raise
    return run_dir.resolve()


def _write_manifest(
    cfg: RunConfig, model: ResolvedModel, reward_path: str, prompts: PromptBuilder | None, run_dir: Path
) -> None:
    prompts = prompts or PromptBuilder(model)
    if getattr(prompts.tokenizer, "magpie_class_mapping_lossy", False):  # e.g. menu key 2; see load_tokenizer
        model = replace(model, tokenizer_path=str(write_engine_tokenizer(model.path, run_dir.resolve() / "tokenizer")))
    frozen = cfg.model_copy(
        update={
            "executor": cfg.executor or default_executor(),
            "output_root": cfg.output_root.resolve(),
            "hardware": frozen_hardware(cfg),
        }
    )
    RunStore(run_dir).write_manifest(
        {
            "run_name": run_dir.name,
            "magpie_hpc_version": __version__,
            "created": datetime.now().astimezone().isoformat(timespec="seconds"),
            "config": frozen.model_dump(mode="json"),
            "model": {**asdict(model), "expected_stop_token_ids": list(model.expected_stop_token_ids)},
            "reward_model_path": reward_path,
            "templates": TemplateTexts.render(prompts, cfg).to_json(),
            "plan": plan_summary(cfg),
            "engine_version": engine_check(cfg, where="launch"),
            "provenance": collect_provenance(model.path, reward_path),  # what `launch --resume` compares
        }
    )


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
    ctx = RunContext(run_dir)
    check_run_files(ctx)  # refuse a damaged run before run.json is rewritten
    updated = reconcile_provenance(ctx.manifest, force=force)  # a changed model or package: refused first
    if new.hardware.architecture is None:  # the launch froze it; a relaunch plans with the same figures
        new = new.model_copy(
            update={"hardware": new.hardware.model_copy(update={"architecture": ctx.cfg.hardware.architecture})}
        )
    diffs = config_differences(ctx.cfg, new)
    if not diffs:
        if updated is not None:
            RunStore(run_dir).write_manifest(updated)
        return
    shown = "; ".join(diffs[:5]) + (f"; and {len(diffs) - 5} more" if len(diffs) > 5 else "")
    if not force:
        raise ConfigError(
            f"config: differs from the run's run.json ({shown}); pass --force to apply it, or drop the changes"
        )
    counts = lambda c: {d: c.domain(d).count for d in c.domains}  # noqa: E731
    if plan_summary(ctx.cfg) != plan_summary(new) or counts(ctx.cfg) != counts(new):
        raise ConfigError(f"config: the change alters the shard plan ({shown}); start a new run instead")
    manifest = dict(updated or ctx.manifest)
    manifest.setdefault("config_history", []).append(
        {"changed": datetime.now().isoformat(timespec="seconds"), "differences": diffs}
    )
    manifest["config"] = new.model_copy(
        update={"executor": ctx.cfg.executor, "output_root": ctx.cfg.output_root}
    ).model_dump(mode="json")
    manifest["templates"] = TemplateTexts.render(ctx.prompts, new).to_json()  # a domain text may have changed
    RunStore(run_dir).write_manifest(manifest)
