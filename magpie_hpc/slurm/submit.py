"""Submit the DAG as SLURM job arrays through submitit, chained by dependencies.

Per domain:  instructions[shards] -afterok-> select -afterok-> responses[shards]
                                                   -afterok-> multi_responses[shards] -aftercorr-> rewards[shards]
and one merge job `afterany` on everything, which refuses to write an incomplete dataset.

Arrays longer than MaxArraySize are split into pieces; task index i of a piece runs the piece's
i-th shard (the mapping is pickled per task by submitit and recorded in jobs.jsonl, never
rewritten). Reward pieces mirror multi-response pieces so `aftercorr` pairs the same shards.
The same code submits a fresh run and a resubmission (only the listed shards).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import submitit

import re

from ..config import SAFE_PATH, SLURM_CONSTRAINT, SLURM_NAME, SLURM_NAME_LIST, RunConfig, SlurmStageResources
from ..context import RunContext
from ..errors import ConfigError
from ..pipeline import MERGE, PIPELINE, stage as stage_spec
from . import cluster
from .task import MergeTask, ShardTask


@dataclass
class Piece:
    """One submitted array (or a slice of a split one)."""

    stage: str
    domain: str
    shards: list[int]
    job_id: str = ""
    dependency: str | None = None


@dataclass
class SubmitPlan:
    todo: dict[tuple[str, str], list[int]]  # (stage, domain) -> shards to submit
    active: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # job ids still queued/running
    merge: bool = True


def split(shards: Sequence[int], max_array_size: int) -> list[list[int]]:
    return [list(shards[i : i + max_array_size]) for i in range(0, len(shards), max_array_size)]


def job_name(run_name: str, stage: str, domain: str | None) -> str:
    return f"magpie-{run_name}-{stage}" + (f"-{domain}" if domain else "")


def stage_resources(cfg: RunConfig, stage: str, tensor_parallel_size: int) -> SlurmStageResources:
    """What one task of the stage asks SLURM for. A generator split over N GPUs (vLLM's
    tensor_parallel_size: 4 for the 70B menu entries) gets N GPUs whatever gpu_stage.gpus says,
    or vLLM would fail on the node hours after submission; the reward model runs on one."""
    spec = None if stage == MERGE else stage_spec(stage)  # the merge runs on CPUs
    res = cfg.slurm.gpu_stage if spec and spec.gpu else cfg.slurm.cpu_stage
    if spec and spec.generates and res.gpus < tensor_parallel_size:
        res = res.model_copy(update={"gpus": tensor_parallel_size})
    return res


def _dep(kind: str, ids: Sequence[str]) -> str | None:
    return f"{kind}:{':'.join(ids)}" if ids else None


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# What each value that becomes an `#SBATCH` line (or the interpreter line) may look like. A newline
# in any of them would end sbatch's reading of `#SBATCH` lines there and run the rest as shell.
SUBMISSION_SYNTAX = {
    "slurm.partition": SLURM_NAME_LIST,
    "slurm.account": SLURM_NAME,
    "slurm.qos": SLURM_NAME_LIST,
    "slurm.constraint": SLURM_CONSTRAINT,
    "slurm.python": SAFE_PATH,
    "job_name": re.compile(r"^[A-Za-z0-9._-]+$"),
}


def check_submission(values: dict[str, str | None]) -> None:
    """Refuse (ConfigError naming the field) any value bound for sbatch that holds a control
    character or breaks SLURM's syntax for it. `slurm.setup` lines are raw shell by design
    (README: What the package trusts) and are only checked for being one line each."""
    for field_name, value in values.items():
        if value is None:
            continue
        text = str(value)
        syntax = SUBMISSION_SYNTAX.get(field_name)
        if _CONTROL.search(text) and not (
            field_name.startswith("slurm.setup") and "\n" not in text and "\r" not in text
        ):
            raise ConfigError(
                f"{field_name}: {text!r} contains a control character (newline, tab, ...); it would "
                "break the batch script; remove it"
            )
        if syntax is not None and not syntax.fullmatch(text):
            raise ConfigError(f"{field_name}: {text!r} does not follow SLURM's syntax for it; fix {field_name}")


def submission_values(cfg: RunConfig, run_dir: str | None = None, run_name: str | None = None) -> dict[str, str | None]:
    s = cfg.slurm
    values: dict[str, str | None] = {
        "slurm.partition": s.partition,
        "slurm.account": s.account,
        "slurm.qos": s.qos,
        "slurm.constraint": s.constraint,
        "slurm.python": s.python,
    }
    values.update({f"slurm.setup[{i}]": line for i, line in enumerate(s.setup)})
    if run_dir is not None:
        values["run directory"] = run_dir
    if run_name is not None:
        values["job_name"] = job_name(run_name, "x", None)
    for domain in cfg.domains:
        values[f"domains ({domain})"] = domain
    return values


# Each task's own copy of Hugging Face's dynamic-module cache: concurrent tasks copying a checkpoint's
# remote code into one shared cache race. The package never runs remote code (trust_remote_code is
# never true), so this is a defence only; SLURM_JOB_ID is distinct per array task.
TASK_MODULES_CACHE = "export HF_MODULES_CACHE=${TMPDIR:-/tmp}/magpie-hf-modules-$SLURM_JOB_ID"
# submitit starts the task with `srun` without --cpus-per-task; SLURM 22.05-23.02 then gives that step
# one CPU (the job's --cpus-per-task is not inherited), and vLLM's tokenizer and scheduler threads
# and the reward model's torch crawl. srun reads SRUN_CPUS_PER_TASK.
SRUN_CPUS = "export SRUN_CPUS_PER_TASK=$SLURM_CPUS_PER_TASK"


def setup_lines(cfg: RunConfig) -> list[str]:
    # Compute nodes are often offline: models were checked in the cache at launch, so never fetch.
    return ["export HF_HUB_OFFLINE=1", TASK_MODULES_CACHE, SRUN_CPUS, *cfg.slurm.setup]


class Submitter:
    def __init__(self, ctx: RunContext, max_array_size: int | None = None):
        self.ctx, self.cfg = ctx, ctx.cfg
        self.max_array_size = max_array_size or cluster.max_array_size()
        self.run_name = ctx.manifest["run_name"]
        # run.json may have been edited since launch checked these: check again what reaches sbatch.
        check_submission(submission_values(self.cfg, str(ctx.run_dir), str(self.run_name)))

    def _executor(self, stage: str, domain: str | None, dependency: str | None) -> submitit.SlurmExecutor:
        s = self.cfg.slurm
        res = stage_resources(self.cfg, stage, self.ctx.model.tensor_parallel_size)
        ex = submitit.SlurmExecutor(
            folder=self.ctx.store.logs / "%j",
            python=s.python or sys.executable,
            max_num_timeout=self.cfg.fault_tolerance.time_limit_requeues,
        )
        ex.update_parameters(
            job_name=job_name(self.run_name, stage, domain),
            partition=s.partition,
            account=s.account,
            qos=s.qos,
            constraint=s.constraint,
            gres=f"gpu:{res.gpus}" if res.gpus else None,
            cpus_per_task=res.cpus,
            mem=f"{res.mem_gb}G",
            time=res.time_min,
            signal_delay_s=res.signal_delay_s,
            array_parallelism=s.stage_array_parallelism.get(stage, s.array_parallelism),
            setup=setup_lines(self.cfg),
            dependency=dependency,
            additional_parameters={"kill-on-invalid-dep": "yes", "requeue": True},
        )
        if s.mail_user and (stage == MERGE or s.mail_every_array):
            ex.update_parameters(mail_user=s.mail_user, mail_type=s.mail_type)
        return ex

    def _record(self, piece: Piece) -> None:
        self.ctx.store.append_job(
            {
                "stage": piece.stage,
                "domain": piece.domain,
                "shards": piece.shards,
                "job_id": piece.job_id,
                "dependency": piece.dependency,
                "name": job_name(self.run_name, piece.stage, piece.domain),
                "submitted": time.time(),
            }
        )

    def submit_piece(self, piece: Piece) -> Piece:
        ex = self._executor(piece.stage, piece.domain, piece.dependency)
        n = len(piece.shards)
        run_dir = str(self.ctx.run_dir)
        jobs = ex.map_array(ShardTask(), [run_dir] * n, [piece.stage] * n, [piece.domain] * n, piece.shards)
        piece.job_id = jobs[0].job_id.split("_")[0]
        self._record(piece)
        return piece

    def submit_merge(self, dependency: str | None) -> Piece:
        ex = self._executor(MERGE, None, dependency)
        job = ex.submit(MergeTask(), str(self.ctx.run_dir))
        piece = Piece(MERGE, "all", [0], job.job_id, dependency)
        self._record(piece)
        return piece

    def submit(self, plan: SubmitPlan) -> list[Piece]:
        """Submit what `plan.todo` lists, wired to new and still-active upstream jobs."""
        submitted: dict[tuple[str, str], list[Piece]] = {}
        for spec in PIPELINE:
            stage = spec.name
            for domain in self.cfg.domains:
                shards = plan.todo.get((stage, domain), [])
                if not shards:
                    continue
                up = spec.upstream
                up_new = submitted.get((up, domain), []) if up else []
                up_active = plan.active.get((up, domain), []) if up else []
                pieces = []
                for part in split(shards, self.max_array_size):
                    piece = Piece(stage, domain, part)
                    twin = next((p for p in up_new if p.shards == part), None)
                    if spec.dependency == "aftercorr" and twin is not None and not up_active:
                        piece.dependency = _dep("aftercorr", [twin.job_id])  # task i waits for task i only
                    else:
                        piece.dependency = _dep("afterok", [p.job_id for p in up_new] + up_active)
                    pieces.append(self.submit_piece(piece))
                submitted[(stage, domain)] = pieces
        new_ids = [p.job_id for pieces in submitted.values() for p in pieces]
        all_pieces = [p for pieces in submitted.values() for p in pieces]
        if plan.merge:
            active_ids = [j for ids in plan.active.values() for j in ids]
            all_pieces.append(self.submit_merge(_dep("afterany", new_ids + active_ids)))
        return all_pieces


def describe_plan(cfg: RunConfig, max_array_size: int, tensor_parallel_size: int = 1) -> dict:
    """What launch would submit: arrays and sizes, dependencies, resources, estimated GPU-hours."""
    from ..plan import estimated_gpu_hours, stage_shards

    arrays, hours = [], {}
    for spec in PIPELINE:
        stage = spec.name
        depends_on = spec.upstream and f"{spec.dependency}: {spec.upstream}" + (
            " (task i after task i)" if spec.dependency == "aftercorr" else ""
        )
        res = stage_resources(cfg, stage, tensor_parallel_size)
        for domain in cfg.domains:
            shards = stage_shards(cfg, stage, domain)
            gpu_h = estimated_gpu_hours(cfg, stage, domain)
            hours[stage] = round(hours.get(stage, 0.0) + gpu_h, 2)
            arrays.append(
                {
                    "stage": stage,
                    "domain": domain,
                    "tasks": len(shards),
                    "arrays": [len(p) for p in split(list(range(len(shards))), max_array_size)],
                    "problems_per_task": max(s.size for s in shards),
                    "depends_on": depends_on,
                    "resources": f"gpus={res.gpus} cpus={res.cpus} mem={res.mem_gb}G time={res.time_min}min",
                    "estimated_gpu_hours": round(gpu_h, 2),
                }
            )
    return {
        "total_problems": cfg.total_problems,
        "domains": cfg.domains,
        "max_array_size": max_array_size,
        "arrays": arrays,
        "merge": "1 job, afterany: everything; refuses incomplete data",
        "estimated_gpu_hours": {**hours, "total": round(sum(hours.values()), 1)},
    }
