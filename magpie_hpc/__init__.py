"""magpie-hpc: Magpie-style math training data on SLURM GPU clusters."""

__version__ = "0.1.0"
