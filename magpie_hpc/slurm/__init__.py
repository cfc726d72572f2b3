"""Everything that knows SLURM: commands, preflight checks, array submission, the compute-node task."""
