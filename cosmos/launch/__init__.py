"""Launching: distributed environment, local processes, SLURM (submitit), preemption."""
