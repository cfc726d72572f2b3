"""The one read model of a run directory: what status, the run summary, the merge, resubmit and the
stages themselves learn from the disk about a run, and nothing else reads those files.

`RunView(store)` gives each shard's progress (`ShardView`: done marker, attempts, committed
records and tokens), the submissions of jobs.jsonl as shard keys, the merge marker, an instruction
shard's top-up (topup.json, asked for by select), and select's records of what it dropped
(near_duplicates.json, decontamination.json). A view reads the disk on every call: it is a way of
reading, not a snapshot, so a long-lived context never sees stale files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from ..errors import CorruptFileError
from ..pipeline import INSTRUCTIONS, MERGE, MERGE_KEY, SELECT, stage as stage_spec
from .files import read_json_file, write_json_atomic
from .run import RunStore
from .shard import TOPUP_FILE, ShardStore, counted_starts

Key = tuple[str, str, int]  # (stage, domain, shard); the merge is pipeline.MERGE_KEY
DUPLICATES_FILE = "near_duplicates.json"
DECONTAMINATION_FILE = "decontamination.json"


def kept_instructions(table: pa.Table) -> int:
    """Clean instructions in a chunk of the instructions stage: a dropped sample has none."""
    return table.num_rows - table["instruction"].null_count


def done_records(stage: str, done: dict) -> int:
    """What a done shard produced, in its stage's record unit: instructions keep `kept` of `rows` samples."""
    return int(done.get("kept", done.get("rows", 0))) if stage == INSTRUCTIONS else int(done.get("rows", 0))


def job_keys(job: dict) -> list[Key]:
    """The shard keys of one jobs.jsonl entry, by array index."""
    return [MERGE_KEY] if job["stage"] == MERGE else [(job["stage"], job["domain"], s) for s in job["shards"]]


@dataclass(frozen=True)
class Submission:
    """One entry of jobs.jsonl: a SLURM job (an array, or a plain job) and the shards it runs."""

    job_id: str
    keys: tuple[Key, ...]

    def task_id(self, key: Key) -> str:
        """The SLURM id of the task that runs `key`: submitit submits a one-shard piece as a plain
        job `A`, an array's task i as `A_i`."""
        return self.job_id if len(self.keys) == 1 else f"{self.job_id}_{self.keys.index(key)}"


@dataclass
class ShardView:
    """One shard as the disk has it: done marker, attempts, committed progress."""

    done: dict | None
    attempts: list[dict]
    records: int = 0  # done or committed so far
    output_tokens: int = 0
    starts: list[dict] = field(default_factory=list)

    @property
    def counted_starts(self) -> list[dict]:
        """Starts that count toward the attempt cap (shard.counted_starts)."""
        return counted_starts(self.attempts)

    @property
    def last_end(self) -> dict | None:
        ends = [a for a in self.attempts if a.get("event") == "end"]
        return ends[-1] if ends else None

    @property
    def last_error(self) -> str | None:
        errors = [a["error"] for a in self.attempts if a.get("event") == "end" and a.get("error")]
        return errors[-1] if errors else None

    @property
    def open_attempt(self) -> bool:
        """The newest start has no end: running, or killed before it could record one."""
        if not self.starts:
            return False
        last = self.starts[-1].get("attempt")
        return not any(a.get("event") == "end" and a.get("attempt") == last for a in self.attempts)

    @property
    def retries(self) -> int:
        return max(0, len(self.starts) - 1)

    @property
    def interrupted(self) -> int:
        """Attempts a signal stopped (preemption, time limit, scancel)."""
        return len(self.starts) - len(self.counted_starts)

    @property
    def first_start(self) -> float | None:
        return min((a["time"] for a in self.starts if a.get("time")), default=None)

    @property
    def last_activity(self) -> float | None:
        times = [a["time"] for a in self.attempts if a.get("time")]
        if self.done and self.done.get("finished"):
            times.append(self.done["finished"])
        return max(times, default=None)


def _committed_progress(stage: str, store: ShardStore) -> tuple[int, int]:
    """(records, output tokens) in the committed chunks of a shard that is not done yet."""
    indices = store.committed_indices()
    if not indices:
        return 0, 0
    import pyarrow.parquet as pq

    records = tokens = 0
    for index in indices:
        try:
            if stage == INSTRUCTIONS:
                table = pq.read_table(store.chunk_path(index), columns=["instruction", "output_tokens"])
                records += kept_instructions(table)
            elif stage_spec(stage).responds:
                table = pq.read_table(store.chunk_path(index), columns=["output_tokens"])
                records += table.num_rows
            else:
                records += pq.read_metadata(store.chunk_path(index)).num_rows
                continue
        except Exception:  # noqa: BLE001 - a chunk being replaced or corrupt: progress only
            continue
        for value in table["output_tokens"].to_pylist():
            tokens += sum(value) if isinstance(value, list) else int(value or 0)
    return records, tokens


class RunView:
    """Reading a run directory (and the few notes select writes for the stages to read back)."""

    def __init__(self, store: RunStore):
        self.store = store

    # ------------------------------------------------------------------------------------ shards

    def shard(self, stage: str, domain: str, shard: int, *, progress: bool = True) -> ShardView:
        """The shard's done marker and attempts; without a done marker and with `progress`, also what
        its committed chunks hold so far (reads their columns: a status, not a summary, needs it)."""
        store = self.store.shard(stage, domain, shard)
        done = store.done()
        attempts = store.attempts()
        found = ShardView(done, attempts, starts=[a for a in attempts if a.get("event") == "start"])
        if done is not None:
            found.records, found.output_tokens = done_records(stage, done), int(done.get("output_tokens", 0))
        elif progress:
            found.records, found.output_tokens = _committed_progress(stage, store)
        return found

    def done(self, stage: str, domain: str, shard: int) -> dict | None:
        return self.store.shard(stage, domain, shard).done()

    def merged(self) -> dict | None:
        """The merge's done marker: the published dataset is complete."""
        return self.store.shard(*MERGE_KEY).done()

    # ------------------------------------------------------------------------------- submissions

    def submissions(self) -> list[Submission]:
        """Every submission of jobs.jsonl, oldest first."""
        return [Submission(str(job["job_id"]), tuple(job_keys(job))) for job in self.store.read_jobs()]

    def submitted(self) -> set[Key]:
        return {key for sub in self.submissions() for key in sub.keys}

    def task_ids(self, key: Key) -> list[str]:
        """SLURM task ids that ran `key`, newest submission first."""
        return [sub.task_id(key) for sub in reversed(self.submissions()) if key in sub.keys]

    # ------------------------------------------------------------------------------- the top-up

    def _topup_path(self, domain: str, shard: int) -> Path:
        return self.store.shard(INSTRUCTIONS, domain, shard).path / TOPUP_FILE

    def topup(self, domain: str, shard: int) -> int:
        """Extra clean instructions an instruction shard must keep beyond its plan: asked for by a
        select that came up short (stages/select.py)."""
        path = self._topup_path(domain, shard)
        try:
            extra = read_json_file(path, f"the top-up of instructions {domain} shard {shard}").get("extra")
        except FileNotFoundError:
            return 0
        if not isinstance(extra, int) or isinstance(extra, bool) or extra < 0:
            raise CorruptFileError(
                f"{path}: the top-up of instructions {domain} shard {shard} is damaged (`extra` "
                "is not a whole number); restore it from a copy; nothing was changed"
            )
        return extra

    def raise_topup(self, domain: str, shard: int, missing: int) -> int:
        """Raise the shard's extra target by `missing` plus half again (for the next round's losses);
        returns the new extra."""
        extra = self.topup(domain, shard) + math.ceil(missing * 1.5)
        write_json_atomic(self._topup_path(domain, shard), {"extra": extra})
        return extra

    # --------------------------------------------------------------------- what select dropped

    def duplicates_path(self, domain: str) -> Path:
        """work/select/<domain>/near_duplicates.json, beside the select shard."""
        return self.store.shard(SELECT, domain, 0).path.parent / DUPLICATES_FILE

    def decontamination_path(self, domain: str) -> Path:
        return self.duplicates_path(domain).parent / DECONTAMINATION_FILE

    def duplicates(self, domain: str) -> dict | None:
        """What select recorded about dropped duplicates, or None (a run from before this file)."""
        path = self.duplicates_path(domain)
        try:
            found = read_json_file(path, f"select's duplicate record of {domain}")
        except FileNotFoundError:
            return None
        counts = ("candidates", "exact_duplicates", "near_duplicates_dropped")
        if not all(isinstance(found.get(k, 0), int) and not isinstance(found.get(k, 0), bool) for k in counts):
            raise CorruptFileError(
                f"{path}: select's duplicate record of {domain} is damaged ({', '.join(counts)} "
                "must be whole numbers); restore it from a copy; nothing was changed"
            )
        return found

    def decontamination(self, domain: str) -> dict | None:
        """What select recorded about instructions dropped as benchmark problems, or None (none
        configured, or a run from before decontamination)."""
        try:
            return read_json_file(self.decontamination_path(domain), f"select's decontamination record of {domain}")
        except FileNotFoundError:
            return None

    def write_duplicates(self, domain: str, record: dict) -> None:
        write_json_atomic(self.duplicates_path(domain), record)

    def write_decontamination(self, domain: str, record: dict | None) -> None:
        """None: no benchmark files configured, so no record (an old one would be read as current)."""
        path = self.decontamination_path(domain)
        if record is None:
            path.unlink(missing_ok=True)
        else:
            write_json_atomic(path, record)
