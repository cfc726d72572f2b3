"""`python -m magpie_hpc ...`: a thin layer over functions the tests call directly.

Every user error ends as one line on stderr and a non-zero exit (2 for bad input), never a
traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ConfigError, MagpieError

if TYPE_CHECKING:  # the executors are imported by the commands that use them: `status` starts fast
    from .executors import LaunchResult


def _launch(args: argparse.Namespace) -> int:
    from .config import load_config, parse_counts
    from .launch import dry_run, launch_run, resume_run

    _refuse_conflicts(args)
    overrides = {
        "domains": args.domains,
        "model": args.model,
        "reward_model": args.reward_model,
        "output_root": args.output_root,
        "executor": args.executor,
        "seed": args.seed,
    }
    if args.engine:
        overrides["engine"] = {
            "kind": args.engine,
            "reward_kind": "synthetic" if args.engine == "synthetic" else "transformers",
        }
    if args.allow_untested_engine:
        overrides["engine"] = {**overrides.get("engine", {}), "allow_untested_engine": True}
    cfg = load_config(
        args.config,
        overrides,
        counts=parse_counts(args.counts) if args.counts else None,
        count=args.count,
        profile=args.profile,
    )
    if args.dry_run:
        plan = dry_run(cfg, notify=_note)
        print(plan.to_json() if args.json else plan.text())
        return 0
    if args.resume is not None:
        return _show(resume_run(args.resume, cfg, force=args.force, notify=_note))
    return _show(launch_run(cfg, notify=_note))


def _note(line: str) -> None:
    print(line, file=sys.stderr)


def _show(result: LaunchResult) -> int:
    for line in result.err:
        _note(line)
    for line in result.out:
        print(line)
    return result.exit_code


# Flags that contradict each other: refused with one line rather than one silently winning.
def _refuse_conflicts(args: argparse.Namespace) -> None:
    if args.count is not None and args.counts:
        raise ConfigError("--count and --counts: pass one of them (--count N sets every domain, --counts some)")
    if args.dry_run and args.resume is not None:
        raise ConfigError("--dry-run and --resume: a dry run plans a new run; drop one of them")
    if args.force and args.resume is None:
        raise ConfigError("--force: only applies with --resume RUN_DIR (accept a changed config); drop it")


def _resubmit(args: argparse.Namespace) -> int:
    """Resubmit what is not done (SLURM) or run the rest of the DAG (local)."""
    from .launch import resume_run

    return _show(resume_run(args.run_dir, notify=_note))


def _run_shard(args: argparse.Namespace) -> int:
    from .context import RunContext
    from .stages import run_shard

    print(json.dumps(run_shard(RunContext(args.run_dir), args.stage, args.domain, args.shard), indent=2))
    return 0


def _merge(args: argparse.Namespace) -> int:
    from .context import RunContext
    from .merge import merge_run

    merge_run(RunContext(args.run_dir))
    print(args.run_dir)
    return 0


def _status(args: argparse.Namespace) -> int:
    from .status import status_command

    return status_command(args.run_dir, as_json=args.json, watch=args.watch)


def _report(args: argparse.Namespace) -> int:
    from .report.quality import report

    return report(args.run_dir, as_json=args.json)


def _cancel(args: argparse.Namespace) -> int:
    from .slurm.control import cancel_run

    for line in cancel_run(args.run_dir, stage=args.stage, domain=args.domain).lines():
        print(line)
    return 0


def _logs(args: argparse.Namespace) -> int:
    from .slurm.control import tail, task_logs

    key = None
    if args.task:
        if len(args.task) != 3 or not args.task[2].isdigit():
            raise ConfigError("logs: name one task as STAGE DOMAIN SHARD (e.g. responses algebra 0), or use --failed")
        if args.failed:
            raise ConfigError("logs: give either --failed or STAGE DOMAIN SHARD, not both")
        key = (args.task[0], args.task[1], int(args.task[2]))
    tasks = task_logs(args.run_dir, failed=args.failed, key=key)
    if not tasks:
        print("no task matches" + (" (no failed task)" if args.failed else ""))
    for task in tasks:
        print(task.header())
        for name, path in (("stderr", task.stderr), ("stdout", task.stdout)):
            print(f"-- {name}: {path or '(none yet)'}")
            for line in tail(path, args.lines) if path else []:
                print(line)
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from .calibration import calibration_toml
    from .context import RunContext

    if not (args.run_dir / "run.json").is_file():
        raise ConfigError(f"calibrate: {args.run_dir} is not a run directory (no run.json); pass RUN_DIR")
    print(calibration_toml(RunContext(args.run_dir)), end="")
    return 0


def _tiny_models(args: argparse.Namespace) -> int:
    from .fixtures import write_tiny_models

    models = write_tiny_models(Path(args.dir), overwrite=args.overwrite)
    for name in ("deepseek", "chatml", "reward"):
        print(f"{name}: {getattr(models, name)}")
    return 0


def _menu_fixtures(args: argparse.Namespace) -> int:
    from .fixtures import write_hub_cache, write_menu_fixtures

    paths = (write_hub_cache if args.hub_cache else write_menu_fixtures)(Path(args.dir))
    for key, path in paths.items():
        print(f"{key}: {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m magpie_hpc", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    launch = sub.add_parser("launch", help="validate, plan and run (or submit) a generation run")
    launch.add_argument("--domains", help="all, or a comma list such as algebra,geometry")
    launch.add_argument("--model", help="menu key (1-5), local model folder or hub id")
    launch.add_argument("--reward-model", help="local folder or hub id (default ArmoRM)")
    launch.add_argument("--count", type=int, help="problems for every chosen domain")
    launch.add_argument("--counts", help="per-domain problems, e.g. algebra=100,geometry=50")
    launch.add_argument("--output-root", type=Path, help="where the run folder is created (default data/)")
    launch.add_argument("--config", type=Path, help="TOML file overriding any config field")
    launch.add_argument("--profile", help="cluster profile: a name in slurm_templates/ or a TOML path")
    launch.add_argument("--executor", choices=["slurm", "local"])
    launch.add_argument("--engine", choices=["vllm", "synthetic"], help="synthetic: test engine, no model weights")
    launch.add_argument("--seed", type=int)
    launch.add_argument(
        "--allow-untested-engine",
        action="store_true",
        help="run on a vLLM outside the tested release line (recorded in run.json)",
    )
    launch.add_argument("--dry-run", action="store_true", help="print the plan; submit and write nothing")
    launch.add_argument("--json", action="store_true", help="with --dry-run: the plan as one JSON document")
    launch.add_argument(
        "--resume", type=Path, metavar="RUN_DIR", help="continue an existing run: resubmit only what is not done"
    )
    launch.add_argument("--force", action="store_true", help="with --resume: accept a changed config")
    launch.set_defaults(func=_launch)

    resub = sub.add_parser("resubmit", help="resubmit the shards of a run that are neither done nor queued")
    resub.add_argument("run_dir", type=Path)
    resub.set_defaults(func=_resubmit)

    shard = sub.add_parser("run-shard", help="run one stage shard (what each array task runs)")
    shard.add_argument("run_dir", type=Path)
    shard.add_argument("stage")
    shard.add_argument("domain")
    shard.add_argument("shard", type=int)
    shard.set_defaults(func=_run_shard)

    merge = sub.add_parser("merge", help="assemble the dataset from a finished run")
    merge.add_argument("run_dir", type=Path)
    merge.set_defaults(func=_merge)

    report = sub.add_parser("report", help="quality figures of a merged run; exit 1 when a threshold is crossed")
    report.add_argument("run_dir", type=Path)
    report.add_argument("--json", action="store_true", help="print the figures as JSON")
    report.set_defaults(func=_report)

    status = sub.add_parser(
        "status",
        help="where a run stands: shards, records, throughput, ETA, failures "
        "(exit 0 complete or progressing, 1 a shard failed, 2 not a run)",
    )
    status.add_argument("run_dir", type=Path)
    shown = status.add_mutually_exclusive_group()
    shown.add_argument(
        "--watch",
        nargs="?",
        type=float,
        const=30.0,
        metavar="SECONDS",
        help="redraw every SECONDS (default 30) until nothing is queued or running",
    )
    shown.add_argument("--json", action="store_true", help="one JSON document (schema: magpie_hpc/status_schema.json)")
    status.set_defaults(func=_status)

    cancel = sub.add_parser("cancel", help="cancel the run's queued and running SLURM jobs (committed chunks stay)")
    cancel.add_argument("run_dir", type=Path)
    cancel.add_argument("--stage", help="only this stage's tasks (instructions, responses, ...)")
    cancel.add_argument("--domain", help="only this domain's tasks")
    cancel.set_defaults(func=_cancel)

    logs = sub.add_parser("logs", help="tail of a task's stderr and stdout, with its SLURM state, node and attempt")
    logs.add_argument("run_dir", type=Path)
    logs.add_argument("task", nargs="*", metavar="STAGE DOMAIN SHARD", help="one task (default: every submitted task)")
    logs.add_argument("--failed", action="store_true", help="only the tasks whose shard failed")
    logs.add_argument("--lines", type=int, default=20, help="lines of each file (default 20)")
    logs.set_defaults(func=_logs)
    calibrate = sub.add_parser("calibrate", help="measured tokens/s per GPU of a (pilot) run, as TOML for --config")
    calibrate.add_argument("run_dir", type=Path)
    calibrate.set_defaults(func=_calibrate)

    tiny = sub.add_parser("tiny-models", help="write tiny random-weight models for tests and demos")
    tiny.add_argument("dir")
    tiny.add_argument("--overwrite", action="store_true")
    tiny.set_defaults(func=_tiny_models)

    menu = sub.add_parser("menu-fixtures", help="write tokenizer-only doubles of the five menu models (no weights)")
    menu.add_argument("dir")
    menu.add_argument(
        "--hub-cache",
        action="store_true",
        help="lay them out as a Hugging Face hub cache (DIR/models--org--name/snapshots/REV)",
    )
    menu.set_defaults(func=_menu_fixtures)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    try:
        return args.func(args)
    except MagpieError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted: committed chunks are kept; rerun to resume", file=sys.stderr)
        return 130
