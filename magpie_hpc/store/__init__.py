"""The one place that knows the run directory's layout on disk.

    <run_dir>/run.json                  frozen config + plan (written once, at launch)
    <run_dir>/jobs.jsonl                every submission, appended
    <run_dir>/work/<stage>/<domain>/shard-00007/part-00000.parquet   committed chunks
    <run_dir>/work/<stage>/<domain>/shard-00007/chunks.jsonl         each chunk's rows, size, sha256
    <run_dir>/work/<stage>/<domain>/shard-00007/DONE.json            the shard's done marker
    <run_dir>/work/<stage>/<domain>/shard-00007/attempts.jsonl       every start of the shard
    <run_dir>/work/select/<domain>/near_duplicates.json              what select dropped
    <run_dir>/logs/                     executor logs

`files` writes whole files or nothing and reads JSON so that damage is one line naming the file
(exit 2); `shard` is one shard folder (chunks checked against their records); `run` is the run
(manifest, jobs.jsonl); `view` is the one read model of all of it that status, the run summary,
the merge and resubmit go through.
"""

from .files import append_line, file_sha256, inside, read_json_file, read_jsonl, write_atomic, write_json_atomic
from .files import _fsync_dir  # noqa: F401 - publish.py syncs its folder renames with it
from .run import JOBS_LOG, RUN_MANIFEST, RunStore
from .view import RunView, ShardView, Submission, done_records, job_keys, kept_instructions
from .shard import (
    CHUNK_LOG,
    CHUNK_NAME,
    DONE_MARKER,
    INTERRUPTED,
    OWN_NAMES,
    OWN_PATTERN,
    TOPUP_FILE,
    ShardStore,
    counted_starts,
)

__all__ = [
    "CHUNK_LOG",
    "CHUNK_NAME",
    "DONE_MARKER",
    "INTERRUPTED",
    "JOBS_LOG",
    "OWN_NAMES",
    "OWN_PATTERN",
    "RUN_MANIFEST",
    "TOPUP_FILE",
    "RunStore",
    "RunView",
    "ShardStore",
    "ShardView",
    "Submission",
    "append_line",
    "counted_starts",
    "done_records",
    "file_sha256",
    "job_keys",
    "kept_instructions",
    "inside",
    "read_json_file",
    "read_jsonl",
    "write_atomic",
    "write_json_atomic",
]
