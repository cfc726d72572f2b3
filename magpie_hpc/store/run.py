"""The run as a whole: its manifest (run.json), its submission log (jobs.jsonl), and where each
shard folder lies."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError, CorruptFileError
from .files import append_line, inside, read_json_file, read_jsonl, write_json_atomic
from .shard import ShardStore

RUN_MANIFEST = "run.json"
JOBS_LOG = "jobs.jsonl"


class RunStore:
    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)

    @property
    def manifest_path(self) -> Path:
        return self.run_dir / RUN_MANIFEST

    @property
    def jobs_path(self) -> Path:
        return self.run_dir / JOBS_LOG

    @property
    def logs(self) -> Path:
        return self.run_dir / "logs"

    def is_run_dir(self) -> bool:
        return self.manifest_path.is_file()

    def read_manifest(self) -> dict:
        if not self.is_run_dir():
            raise ConfigError(
                f"{self.run_dir} is not a magpie-hpc run directory (no {RUN_MANIFEST}); pass the folder launch created"
            )
        manifest = read_json_file(self.manifest_path, "the run manifest")
        missing = [k for k in ("config", "model", "reward_model_path") if not isinstance(manifest.get(k), (dict, str))]
        if missing or not isinstance(manifest["config"], dict) or not isinstance(manifest["model"], dict):
            raise CorruptFileError(
                f"{self.manifest_path}: the run manifest is damaged (missing or wrong "
                f"{', '.join(missing) or 'config/model'}); restore it from a copy; nothing was changed"
            )
        return manifest

    def write_manifest(self, manifest: dict) -> None:
        write_json_atomic(self.manifest_path, manifest)

    def shard(self, stage: str, domain: str, shard: int) -> ShardStore:
        # stage and domain names are checked against config.NAME_PATTERN when the config is
        # loaded; this check keeps a name from a hand-edited run.json from leading elsewhere.
        path = self.run_dir / "work" / stage / domain / f"shard-{shard:05d}"
        inside(self.run_dir, path)
        return ShardStore(path)

    def append_job(self, record: dict) -> None:
        append_line(self.jobs_path, record)

    def read_jobs(self) -> list[dict]:
        jobs = read_jsonl(self.jobs_path, "the job log", required=("stage", "shards", "job_id"))
        for number, job in enumerate(jobs, 1):
            if not isinstance(job["shards"], list) or not all(isinstance(s, int) for s in job["shards"]):
                raise CorruptFileError(
                    f"{self.jobs_path}: the job log is damaged (entry {number}: shards is not "
                    "a list of shard numbers); restore it from a copy; nothing was changed"
                )
        return jobs
