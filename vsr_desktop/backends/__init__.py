"""Where a job runs: local (this machine), and later aws and slurm. No Qt."""
