"""The one place that knows the run directory's layout on disk.

    <run_dir>/run.json                  frozen config + plan (written once, at launch)
    <run_dir>/jobs.jsonl                every submission, appended
    <run_dir>/work/<stage>/<domain>/shard-00007/part-00000.parquet   committed chunks
    <run_dir>/work/<stage>/<domain>/shard-00007/DONE.json            the shard's done marker
    <run_dir>/logs/                     executor logs

Chunks are the unit of loss: each is written under a unique temporary name, fsynced and renamed
to its fixed name, so a crash leaves either the whole chunk or none, and two writers of the same
chunk leave one file, never a record twice.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .errors import MagpieError

RUN_MANIFEST = "run.json"
JOBS_LOG = "jobs.jsonl"
DONE_MARKER = "DONE.json"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _is_disk_full(exc: OSError) -> bool:
    return exc.errno in (errno.ENOSPC, errno.EDQUOT) or "No space left" in str(exc)


def write_atomic(path: Path, data: bytes) -> None:
    """Whole file or nothing: unique temp name, fsync, rename, fsync the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if _is_disk_full(exc):
            raise MagpieError(f"disk full writing {path}: free space (or quota) and rerun") from exc
        raise
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def append_line(path: Path, record: dict) -> None:
    """One JSON line per write with O_APPEND: safe with concurrent appenders on one host."""
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def write_json_atomic(path: Path, obj: Any) -> None:
    write_atomic(path, (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode())


class ShardStore:
    """One shard of one stage: its committed chunks, its lock and its done marker."""

    def __init__(self, path: Path):
        self.path = path

    def chunk_path(self, index: int) -> Path:
        return self.path / f"part-{index:05d}.parquet"

    @property
    def done_path(self) -> Path:
        return self.path / DONE_MARKER

    def done(self) -> dict | None:
        try:
            return json.loads(self.done_path.read_text())
        except FileNotFoundError:
            return None

    def committed_indices(self) -> list[int]:
        """Chunk indices present on disk, in order (names only; read_committed validates)."""
        if not self.path.is_dir():
            return []
        found = sorted(int(p.stem.split("-")[1]) for p in self.path.glob("part-*.parquet"))
        return found

    def read_committed(self) -> list[pa.Table]:
        """Committed chunks 0..k-1 in order. A chunk that cannot be read is set aside (renamed
        `.corrupt-*`) with every chunk after it, and is redone by the caller."""
        tables: list[pa.Table] = []
        for expected, index in enumerate(self.committed_indices()):
            path = self.chunk_path(index)
            if index != expected:
                self._set_aside(path)
                continue
            try:
                tables.append(pq.read_table(path))
            except (OSError, pa.ArrowException):
                self._set_aside(path)
                # Later chunks may have been built on this one: redo them too.
                for later in self.committed_indices():
                    if later > index:
                        self._set_aside(self.chunk_path(later))
                break
        return tables

    def _set_aside(self, path: Path) -> None:
        if path.exists():
            os.replace(path, path.with_name(f"{path.name}.corrupt-{int(time.time())}"))

    def commit(self, index: int, table: pa.Table) -> Path:
        self.path.mkdir(parents=True, exist_ok=True)
        target = self.chunk_path(index)
        tmp = self.path / f".part-{index:05d}.{uuid.uuid4().hex}.tmp"
        try:
            pq.write_table(table, tmp, compression="zstd")
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except OSError as exc:
            if _is_disk_full(exc):
                raise MagpieError(f"disk full writing chunk {index} of {self.path}: free space (or quota) and "
                                  "rerun; the chunks committed before it are kept") from exc
            raise
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(self.path)
        return target

    def mark_done(self, summary: dict) -> None:
        write_json_atomic(self.done_path, summary)

    def read_all(self) -> pa.Table:
        tables = [pq.read_table(self.chunk_path(i)) for i in self.committed_indices()]
        if not tables:
            raise MagpieError(f"{self.path} has no committed chunks")
        return pa.concat_tables(tables, promote_options="default")

    @property
    def attempts_path(self) -> Path:
        return self.path / "attempts.jsonl"

    def attempts(self) -> list[dict]:
        """Every start of this shard (requeues and resubmissions alike) and how each ended."""
        try:
            lines = self.attempts_path.read_text().splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in lines if line.strip()]

    def counted_starts(self) -> list[dict]:
        return counted_starts(self.attempts())

    def log_interruption(self, signal: str, attempt: int | None = None) -> None:
        """A signal stopped the attempt (`attempt`, default the newest start): it will not count
        toward max_attempts. Logged when the signal arrives; the task may be killed before it ends."""
        if attempt is None:
            starts = [a for a in self.attempts() if a.get("event") == "start"]
            if not starts:
                return
            attempt = starts[-1].get("attempt")
        self.log_attempt({"event": "interrupted", "time": time.time(), "attempt": attempt, "signal": signal})

    def log_attempt(self, record: dict) -> None:
        """Best effort: a full disk must not hide the error that is being recorded."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            append_line(self.attempts_path, record)
        except OSError as exc:
            logging.getLogger("magpie_hpc").warning("could not record attempt in %s: %s", self.attempts_path, exc)

    def remove_stale_temps(self, older_than: float = 3600) -> None:
        """Temp files of writers killed mid-chunk; never a committed chunk."""
        for tmp in self.path.glob(".part-*.tmp"):
            if time.time() - tmp.stat().st_mtime > older_than:
                tmp.unlink(missing_ok=True)


# What a task records when a signal stopped it: the `interrupted` event (written when the signal
# arrives) and the error of its `end` event.
INTERRUPTED = "Interrupted:"


def counted_starts(attempts: list[dict]) -> list[dict]:
    """The starts that count toward fault_tolerance.max_attempts: not those a signal stopped
    (preemption, time limit, scancel), which say nothing about the shard, and of which a long shard
    on a busy cluster may see many."""
    stopped = {a.get("attempt") for a in attempts
               if a.get("event") == "interrupted" or str(a.get("error", "")).startswith(INTERRUPTED)}
    return [a for a in attempts if a.get("event") == "start" and a.get("attempt") not in stopped]


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
            raise MagpieError(f"{self.run_dir} is not a magpie-hpc run directory (no {RUN_MANIFEST}); pass the folder launch created")
        return json.loads(self.manifest_path.read_text())

    def write_manifest(self, manifest: dict) -> None:
        write_json_atomic(self.manifest_path, manifest)

    def shard(self, stage: str, domain: str, shard: int) -> ShardStore:
        return ShardStore(self.run_dir / "work" / stage / domain / f"shard-{shard:05d}")

    def append_job(self, record: dict) -> None:
        append_line(self.jobs_path, record)

    def read_jobs(self) -> list[dict]:
        if not self.jobs_path.exists():
            return []
        return [json.loads(line) for line in self.jobs_path.read_text().splitlines() if line.strip()]
