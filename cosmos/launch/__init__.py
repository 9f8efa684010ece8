"""Launching: local processes, SLURM (submitit) and sweeps. Sits above the engine."""
