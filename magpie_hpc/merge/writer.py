"""The merge's output tables, streamed: each one written as a JSON array and as Parquet at once,
batch by batch, so memory holds one output batch whatever the table's size."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["BATCH_BYTES", "BATCH_ROWS", "TableWriter"]

# An output batch goes to Parquet (one row group) at whichever comes first: a preference record is
# ~100 KB of text, an instruction record ~1 KB, so a row cap alone would either bloat memory or
# write tiny row groups.
BATCH_ROWS = 8192
BATCH_BYTES = 32 << 20

# msgspec writes the same JSON as json.dumps(indent=2, ensure_ascii=False) (floats may be spelled
# differently, same values) about 3.5x faster: json's indenting encoder is pure Python, and it was
# most of the merge's time (BENCHMARKS.md, merge at scale).
_encode = msgspec.json.Encoder().encode


def _null_to_string(dtype: pa.DataType) -> pa.DataType:
    """Columns that were all None in the first batch get a string type, so later values fit."""
    if pa.types.is_null(dtype):
        return pa.string()
    if pa.types.is_list(dtype):
        return pa.list_(_null_to_string(dtype.value_type))
    if pa.types.is_struct(dtype):
        return pa.struct([pa.field(f.name, _null_to_string(f.type)) for f in dtype])
    return dtype


class TableWriter:
    """One output table written twice, as a JSON array (indent 2, like the original) and as Parquet,
    record batch by record batch. Both appear under their final names only when complete."""

    def __init__(self, json_path: Path):
        self.json_path, self.parquet_path = json_path, json_path.with_suffix(".parquet")
        self._tmp_json = json_path.with_name(f".{json_path.name}.{uuid.uuid4().hex}.tmp")
        self._tmp_parquet = json_path.with_name(f".{self.parquet_path.name}.{uuid.uuid4().hex}.tmp")
        self._json = open(self._tmp_json, "wb")
        self._json.write(b"[")
        self._parquet: pq.ParquetWriter | None = None
        self._batch: list[dict] = []
        self._batch_bytes = 0
        self.count = 0

    def write(self, record: dict) -> None:
        # Formatted as the one element of a list, the record comes indented as inside the file's
        # array: b'[\n  {...}\n]' minus the brackets is the element.
        text = msgspec.json.format(_encode((record,)), indent=2)[2:-2]
        self._json.write((b"\n" if self.count == 0 else b",\n") + text)
        self.count += 1
        self._batch.append(record)
        self._batch_bytes += len(text)
        if len(self._batch) >= BATCH_ROWS or self._batch_bytes >= BATCH_BYTES:
            self._flush()

    def _flush(self) -> None:
        if not self._batch:
            return
        if self._parquet is None:
            inferred = pa.Table.from_pylist(self._batch).schema
            schema = pa.schema([pa.field(f.name, _null_to_string(f.type)) for f in inferred])
            self._parquet = pq.ParquetWriter(self._tmp_parquet, schema, compression="zstd")
        self._parquet.write_table(pa.Table.from_pylist(self._batch, schema=self._parquet.schema))
        self._batch, self._batch_bytes = [], 0

    def __enter__(self) -> TableWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
            return
        self._json.close()  # failed half-way: leave no temporary files behind
        if self._parquet is not None:
            self._parquet.close()
        for tmp in (self._tmp_json, self._tmp_parquet):
            tmp.unlink(missing_ok=True)

    def close(self) -> None:
        self._flush()
        self._json.write(b"\n]\n" if self.count else b"]\n")
        self._json.flush()
        os.fsync(self._json.fileno())
        self._json.close()
        if self._parquet is None:
            # No Parquet file for an empty table: `datasets` refuses every Parquet file without rows
            # (whatever its schema), and one such file breaks a glob over all domains. The JSON `[]`
            # stays (the seed's contract); a stale twin from an earlier merge goes.
            os.replace(self._tmp_json, self.json_path)
            self.parquet_path.unlink(missing_ok=True)
            return
        self._parquet.close()
        os.replace(self._tmp_json, self.json_path)
        os.replace(self._tmp_parquet, self.parquet_path)
