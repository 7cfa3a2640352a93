"""Job entry points (local, and SLURM via submitit)."""
