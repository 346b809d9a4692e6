"""Scheduling: where and how each job runs. The hardware description, the planner of
placements (CPU/GPU, memory) and its calibration, the resource estimates of the workflow's
jobs and the SLURM node types. Imports maths, io and analysis; never stages or the CLI."""
