"""One shard folder: its committed chunks and their records, its done marker and its attempt log.

Chunks are the unit of loss: each is written under a unique temporary name, fsynced and renamed
to its fixed name, so a crash leaves either the whole chunk or none, and two writers of the same
chunk leave one file, never a record twice.

Each chunk's row count, byte size and sha256 are appended to the shard's `chunks.jsonl` before the
chunk is renamed into place, and every reader checks them: a chunk that is truncated, has bytes
changed or has no record is damaged, never trusted. Only names the store writes (`part-NNNNN.parquet`)
are chunks; anything else in a shard folder is left alone and reported as a stray file. A bad chunk
is moved aside (`<name>.corrupt-<time>-<id>`), never deleted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import CorruptFileError, DamagedShardError, MagpieError
from .files import (
    _cached_sha256,
    _fsync_dir,
    _is_disk_full,
    _short,
    append_line,
    file_sha256,
    read_json_file,
    read_jsonl,
    write_json_atomic,
)

DONE_MARKER = "DONE.json"
CHUNK_LOG = "chunks.jsonl"
ATTEMPT_LOG = "attempts.jsonl"
TOPUP_FILE = "topup.json"  # an instruction shard's extra target, asked for by select (view.py)
CHUNK_NAME = re.compile(r"^part-(\d{5})\.parquet$")
# Everything else the package itself writes in a shard folder (the lock's files, select's top-up
# note, temp files of a chunk being written, what was set aside): never reported as stray.
OWN_NAMES = {DONE_MARKER, CHUNK_LOG, ATTEMPT_LOG, "owner.json", ".lock", TOPUP_FILE}
OWN_PATTERN = re.compile(
    r"^(\.part-\d{5}\.[0-9a-f]+\.tmp|\..+\.[0-9a-f]{32}\.tmp|part-\d{5}\.parquet\.corrupt-.+"
    r"|DONE\.json\.damaged-.+|\.lock.*|owner\.json.*)$"
)

# DONE.json fields readers add up: a number or absent.
_DONE_NUMBERS = (
    "rows",
    "chunks",
    "kept",
    "output_tokens",
    "prompt_tokens",
    "seconds",
    "model_load_seconds",
    "resumed_at_chunk",
    "attempt",
    "total_problems",
)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class ShardStore:
    """One shard of one stage: its committed chunks, its lock and its done marker."""

    def __init__(self, path: Path):
        self.path = path

    @property
    def label(self) -> str:
        """`stage domain shard N`, as every message names a shard."""
        parts = self.path.parts
        try:
            return f"{parts[-3]} {parts[-2]} shard {int(parts[-1].split('-')[1])}"
        except (IndexError, ValueError):
            return str(self.path)

    def chunk_path(self, index: int) -> Path:
        return self.path / f"part-{index:05d}.parquet"

    @property
    def done_path(self) -> Path:
        return self.path / DONE_MARKER

    @property
    def chunk_log_path(self) -> Path:
        return self.path / CHUNK_LOG

    def done(self) -> dict | None:
        try:
            done = read_json_file(self.done_path, f"the done marker of {self.label}")
        except FileNotFoundError:
            return None
        wrong = [k for k in _DONE_NUMBERS if k in done and not _is_number(done[k])]
        reasons = done.get("finish_reasons", {})
        if not isinstance(reasons, dict) or not all(_is_number(v) for v in reasons.values()):
            wrong.append("finish_reasons")
        if wrong:
            raise CorruptFileError(
                f"{self.done_path}: the done marker of {self.label} is damaged ({', '.join(wrong)} "
                "not a number); restore it from a copy, or move it aside to redo the shard; "
                "nothing was changed"
            )
        return done

    def committed_indices(self) -> list[int]:
        """Chunk indices present on disk, in order: only names the store writes (`part-NNNNN.parquet`);
        read_committed and check_chunk validate their contents."""
        if not self.path.is_dir():
            return []
        return sorted(int(m.group(1)) for p in self.path.iterdir() if (m := CHUNK_NAME.fullmatch(p.name)))

    def stray_files(self) -> list[Path]:
        """Files in the shard folder that the store did not write (a copy, an editor's backup): never
        read as chunks, never touched, reported by `status`."""
        if not self.path.is_dir():
            return []
        return sorted(
            p
            for p in self.path.iterdir()
            if not (CHUNK_NAME.fullmatch(p.name) or p.name in OWN_NAMES or OWN_PATTERN.fullmatch(p.name))
        )

    def chunk_records(self) -> dict[int, list[dict]] | None:
        """index -> the records appended for it at commit (a redone chunk has several; the file must
        match one of them). None for a shard written before records existed (no chunks.jsonl). A
        line that cannot be read is no record: the chunk it described is then unverified and redone."""
        try:
            raw = self.chunk_log_path.read_bytes()
        except FileNotFoundError:
            return None
        records: dict[int, list[dict]] = {}
        for line in raw.split(b"\n"):
            try:
                rec = json.loads(line)
                index, size, sha = int(rec["index"]), int(rec["bytes"]), str(rec["sha256"])
                int(rec["rows"])
            except (ValueError, TypeError, KeyError, UnicodeDecodeError):
                continue
            if size >= 0 and len(sha) == 64:
                records.setdefault(index, []).append(rec)
        return records

    def check_chunk(
        self,
        index: int,
        records: dict[int, list[dict]] | None = None,
        *,
        full: bool = True,
        sha: str | None = None,
        size: int | None = None,
    ) -> tuple[dict | None, str | None]:
        """(matching record, None) for a sound chunk, (None, what is wrong) for a damaged one.
        `full=False` checks presence and size only; `sha`/`size` of bytes already read skip rereading."""
        path = self.chunk_path(index)
        if records is None:
            records = self.chunk_records()
        if records is None:  # written before records existed: readable is all that can be checked
            try:
                return {"rows": pq.read_metadata(path).num_rows}, None
            except (OSError, pa.ArrowException) as exc:
                return None, f"cannot be read ({_short(exc)})"
        mine = records.get(index)
        if not mine:
            return None, f"has no record in {CHUNK_LOG} (never committed, or the record was lost)"
        try:
            if size is None:
                size = path.stat().st_size
            if not any(int(r["bytes"]) == size for r in mine):
                return None, f"is {size} bytes, {int(mine[-1]['bytes'])} were committed (truncated or changed)"
            if not full:
                return next(r for r in mine if int(r["bytes"]) == size), None
            if sha is None:
                st = path.stat()
                sha, size = _cached_sha256(str(path), st.st_size, st.st_mtime_ns, st.st_ino)
        except FileNotFoundError:
            return None, "is missing"
        except OSError as exc:
            return None, f"cannot be read ({exc.strerror or exc})"
        match = next((r for r in mine if r["sha256"] == sha and int(r["bytes"]) == size), None)
        if match is None:
            return None, "does not match the sha256 recorded when it was committed (bytes changed)"
        return match, None

    def read_chunk(self, index: int, records: dict[int, list[dict]] | None = None) -> tuple[pa.Table, dict]:
        """One chunk, read once and checked against its record: (table, record), or DamagedShardError
        naming the shard and the file."""
        path = self.chunk_path(index)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            data = None
        if data is None:
            problem, record = "is missing", None
        else:
            record, problem = self.check_chunk(index, records, sha=hashlib.sha256(data).hexdigest(), size=len(data))
        if problem is None:
            try:
                table = pq.read_table(pa.BufferReader(data))
            except (OSError, pa.ArrowException) as exc:
                problem = f"cannot be read ({_short(exc)})"
            else:
                if table.num_rows != int(record.get("rows", table.num_rows)):
                    problem = f"holds {table.num_rows} rows, {record['rows']} were committed"
                else:
                    return table, record
        run_dir = self.path.parents[3] if len(self.path.parents) > 3 else "RUN_DIR"
        raise DamagedShardError(
            f"{self.label}: {path} {problem}; run `python -m magpie_hpc resubmit {run_dir}` "
            "(or launch --resume) to move it aside and redo the shard"
        )

    def damage(self, *, full: bool = True) -> list[str]:
        """What is wrong with a done shard's chunks, one message per file naming the shard and the
        file (empty: sound, or not done)."""
        return [message for _, message in self.damage_report(full=full)]

    def damage_report(self, *, full: bool = True) -> list[tuple[int | None, str]]:
        """(chunk index or None, message) per problem of a done shard: chunks 0..n-1 all there, each
        matching its record, DONE.json's chunk and row counts agreeing with them."""
        done = self.done()
        if done is None:
            return []
        records = self.chunk_records()
        indices = self.committed_indices()
        problems: list[tuple[int | None, str]] = []
        expected = done.get("chunks") if isinstance(done.get("chunks"), int) else len(indices)
        for index in range(max(expected, len(indices))):
            path = self.chunk_path(index)
            if index >= expected:
                problems.append((index, f"{self.label}: {path} is not one of the {expected} chunks DONE.json counts"))
            elif index not in indices:
                problems.append((index, f"{self.label}: {path} is missing (DONE.json counts {expected} chunks)"))
            else:
                _, problem = self.check_chunk(index, records, full=full)
                if problem:
                    problems.append((index, f"{self.label}: {path} {problem}"))
        if not problems and records is not None and isinstance(done.get("rows"), int):
            sizes = {i: self.chunk_path(i).stat().st_size for i in indices}
            rows = sum(int(next(r for r in records[i] if int(r["bytes"]) == sizes[i])["rows"]) for i in indices)
            if rows != done["rows"]:
                problems.append(
                    (None, f"{self.label}: {self.done_path} says {done['rows']} rows, its chunks hold {rows}")
                )
        return problems

    def read_committed(self) -> list[pa.Table]:
        """Committed chunks 0..k-1 in order, each checked against its record. A damaged chunk is set
        aside (renamed `.corrupt-*`) with every chunk after it, and is redone by the caller."""
        tables: list[pa.Table] = []
        records = self.chunk_records()
        indices = self.committed_indices()
        for expected, index in enumerate(indices):
            if index != expected:
                self.set_aside_chunks(index, f"chunk {expected} before it is missing")
                break
            try:
                table, _ = self.read_chunk(index, records)
            except DamagedShardError as exc:
                # Later chunks may have been built on this one: redo them too.
                self.set_aside_chunks(index, str(exc))
                break
            tables.append(table)
        return tables

    def set_aside_chunks(self, first: int, why: str) -> list[Path]:
        """Move chunk `first` and every later one aside (never deleted); returns the new names."""
        moved = []
        for index in self.committed_indices():
            if index >= first:
                moved.append(self._set_aside(self.chunk_path(index)))
        logging.getLogger("magpie_hpc").warning(
            "%s: set aside %s (%s)", self.label, ", ".join(p.name for p in moved if p), why
        )
        return [p for p in moved if p]

    def set_aside_done(self) -> Path | None:
        """Move DONE.json aside (never deleted), so the shard is redone."""
        if not self.done_path.exists():
            return None
        target = self.path / f"{DONE_MARKER}.damaged-{int(time.time())}-{uuid.uuid4().hex[:8]}"
        os.replace(self.done_path, target)
        return target

    def _set_aside(self, path: Path) -> Path | None:
        if path.exists():
            target = path.with_name(f"{path.name}.corrupt-{int(time.time())}-{uuid.uuid4().hex[:8]}")
            os.replace(path, target)
            return target
        return None

    def commit(self, index: int, table: pa.Table, settings: dict | None = None) -> Path:
        """Write chunk `index` whole or not at all. Its record (rows, bytes, sha256, and the sampling
        `settings` that produced it) is appended before the rename: a record without a file is
        harmless, a file without a record would be damaged."""
        self.path.mkdir(parents=True, exist_ok=True)
        target = self.chunk_path(index)
        tmp = self.path / f".part-{index:05d}.{uuid.uuid4().hex}.tmp"
        try:
            pq.write_table(table, tmp, compression="zstd")
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            sha, size = file_sha256(tmp)
            record = {"index": index, "rows": table.num_rows, "bytes": size, "sha256": sha, "time": time.time()}
            if settings is not None:
                record["settings"] = settings
            append_line(self.chunk_log_path, record)
            os.replace(tmp, target)
        except OSError as exc:
            if _is_disk_full(exc):
                raise MagpieError(
                    f"disk full writing chunk {index} of {self.path}: free space (or quota) and "
                    "rerun; the chunks committed before it are kept"
                ) from exc
            raise
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(self.path)
        return target

    def mark_done(self, summary: dict) -> None:
        write_json_atomic(self.done_path, summary)

    def read_all(self) -> pa.Table:
        """Every committed chunk, each checked against its record (DamagedShardError if one is not)."""
        records = self.chunk_records()
        tables = [self.read_chunk(i, records)[0] for i in self.committed_indices()]
        if not tables:
            raise MagpieError(f"{self.path} has no committed chunks")
        return pa.concat_tables(tables, promote_options="default")

    @property
    def attempts_path(self) -> Path:
        return self.path / ATTEMPT_LOG

    def attempts(self) -> list[dict]:
        """Every start of this shard (requeues and resubmissions alike) and how each ended."""
        return read_jsonl(self.attempts_path, f"the attempt log of {self.label}", required=("event",))

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
    stopped = {
        a.get("attempt")
        for a in attempts
        if a.get("event") == "interrupted" or str(a.get("error", "")).startswith(INTERRUPTED)
    }
    return [a for a in attempts if a.get("event") == "start" and a.get("attempt") not in stopped]
