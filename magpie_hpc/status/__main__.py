"""`python -m magpie_hpc.status`: regenerate the published schema (status_schema.json)."""

from .model import write_schema

print(write_schema())
