"""The example workflow through SLURM against its local run (issue 21's target: <= 3x).

Starts the single-node test cluster of tests/test_slurm.py (tools/slurm_cluster.sh: needs
root, Debian's slurm-wlm and munge; its state in a temporary folder; stopped at the end),
copies the workflow, package and config/config.yaml (the example) into two fresh folders
and runs, in each, what a user types:

  * ``snakemake --cores all`` (local);
  * ``zernike3d profile install --site SITE`` then ``snakemake --profile slurm``, SITE
    being the test's site settings (first status check after 8 s, as the test cluster's
    MinJobAge allows; the shipped default is 40 s, see config/slurm-site.yaml).

Reports both wall times, their ratio, the SLURM jobs submitted (one per group job) and how
often the run printed each of the lines a user asks about. Refuses to run when a
slurmctld is already up (another user's cluster on the same ports).

    sudo python3 benchmarks/bench_slurm.py
    sudo python3 benchmarks/bench_slurm.py --init-seconds 40      # the shipped default
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "tools" / "slurm_cluster.sh"

#: lines of a SLURM run a user asks about (README, "On a SLURM cluster")
NOTED = {
    "sacct: invalid option": "sacct: invalid option -- '1'",
    "was never awaited": "RuntimeWarning: coroutine ... was never awaited",
    "tmpdir=<TBD>": "tmpdir=<TBD>",
}


def copy_repo(dest):
    for part in ("workflow", "zernike3d", "config", "envs"):
        shutil.copytree(REPO / part, dest / part, ignore=shutil.ignore_patterns("__pycache__"))


def timed(command, cwd, env):
    start = time.perf_counter()
    run = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if run.returncode != 0:
        sys.exit(f"{' '.join(command)} failed in {cwd}:\n{(run.stdout + run.stderr)[-4000:]}")
    return seconds, run.stdout + run.stderr


def our_jobs(earlier):
    """[[id, comment, state, seconds it ran]] of the jobs not in ``earlier``."""
    out = subprocess.run(["squeue", "--states=all", "--noheader", "-O", "JobID:|,Comment:|,State:|,TimeUsed:|"],
                         capture_output=True, text=True, check=True).stdout
    rows = [[p.strip() for p in line.split("|")[:4]] for line in out.splitlines()]
    return [r[:3] + [seconds(r[3])] for r in rows if len(r) == 4 and r[0] not in earlier and r[1].startswith("rule_")]


def seconds(used):
    """SLURM's [days-][hours:]minutes:seconds as seconds."""
    days, _, clock = used.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0)
    return (int(days or 0) * 24 + parts[0]) * 3600 + parts[1] * 60 + parts[2]


def refuse_if_a_cluster_runs():
    if subprocess.run(["pgrep", "-x", "slurmctld"], capture_output=True).returncode == 0:
        sys.exit("a slurmctld is already running (another cluster on ports 6817/6818): wait for it to stop")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--init-seconds", type=int, default=8,
                        help="site init_seconds_before_status_checks (default 8, the test's)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (it starts slurmctld, slurmd and munged)")
    refuse_if_a_cluster_runs()
    with tempfile.TemporaryDirectory(prefix="bench_slurm-") as tmp:
        tmp = Path(tmp)
        env = dict(os.environ, ZERNIKE3D_SLURM_DIR=str(tmp / "slurm"), XDG_CONFIG_HOME=str(tmp / "xdg"))
        env.pop("SLURM_JOB_ID", None)
        local, remote = tmp / "local", tmp / "remote"
        copy_repo(local)
        copy_repo(remote)
        local_s, _ = timed([sys.executable, "-m", "snakemake", "--cores", "all"], local, env)
        refuse_if_a_cluster_runs()  # again: one may have started during the local run
        started = subprocess.run(["bash", str(CLUSTER), "start", "--gpus", "0"], env=env, capture_output=True, text=True)
        try:
            if started.returncode != 0:
                sys.exit(f"could not start the cluster: {started.stderr[-2000:]}")
            site = tmp / "site.yaml"
            site.write_text(yaml.safe_dump({"init_seconds_before_status_checks": args.init_seconds,
                                            "latency_wait": 5, "retries": 0}))
            timed([sys.executable, "-m", "zernike3d", "profile", "install", "--site", str(site)], remote, env)
            earlier = {r[0] for r in our_jobs(set())}
            slurm_s, output = timed([sys.executable, "-m", "snakemake", "--profile", "slurm"], remote, env)
            jobs = our_jobs(earlier)
        finally:
            subprocess.run(["bash", str(CLUSTER), "stop"], env=env, capture_output=True)
    local_jobs = len([line for line in output.splitlines() if line.strip().startswith("rule ")])
    print(f"example workflow (config/config.yaml), {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}; site init_seconds_before_status_checks: {args.init_seconds}")
    print("| run | wall s | SLURM jobs |")
    print("|---|---|---|")
    print(f"| `snakemake --cores all` | {local_s:.0f} | - |")
    print(f"| `snakemake --profile slurm` | {slurm_s:.0f} | {len(jobs)} (for {local_jobs} rule jobs) |")
    print(f"SLURM / local = {slurm_s / local_s:.2f} (target <= 3)")
    for job in jobs:
        print(f"  job {job[0]}: {job[3]} s in SLURM, {job[1]}")
    print(f"  time in SLURM jobs: {sum(j[3] for j in jobs)} s; the rest: Snakemake's own start and "
          f"planning, and the waits for submission and status checks")
    print("not COMPLETED:", [j[:3] for j in jobs if j[2] != "COMPLETED"] or "none")
    for needle, label in NOTED.items():
        print(f"lines with {label!r}: {sum(needle in line for line in output.splitlines())}")


if __name__ == "__main__":
    main()
