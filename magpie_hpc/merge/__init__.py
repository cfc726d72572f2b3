"""The merge: every shard's chunks -> the dataset layout users load (SPEC.md), nothing else.

Streams every stage one committed chunk at a time, row by row in id order, so memory is bounded by
one chunk and one output batch whatever the run's size. Before writing, it proves the run complete:
every shard done; while writing, that every id of every range is present exactly once, in order.

run.py orchestrates (missing shards, the lock, staging, publish, the done marker), domain.py
merges one domain, records.py says what each record holds, writer.py writes the JSON and Parquet
tables, publish.py stages and publishes; the card and plots are report/'s.
"""

from __future__ import annotations

from .domain import DomainMerger, LoopCount, loop_figures, stage_rows
from .records import file_names, final_answers
from .run import generation_configs, merge_run, missing_shards
from .writer import TableWriter

__all__ = [
    "DomainMerger",
    "LoopCount",
    "TableWriter",
    "file_names",
    "final_answers",
    "generation_configs",
    "loop_figures",
    "merge_run",
    "missing_shards",
    "stage_rows",
]
