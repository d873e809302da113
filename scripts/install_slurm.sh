#!/usr/bin/env bash
# SLURM and munge from Debian, for the one-node scheduler test (tests/test_slurm.py). Idempotent: does nothing
# when the binaries are already there. Needs root (CI runs as root); elsewhere it says why it cannot and exits 0,
# so the test can skip with that reason instead of failing the install step.
set -euo pipefail
need=(slurmctld slurmd sbatch squeue sacct scontrol munged)
missing=0
for b in "${need[@]}"; do command -v "$b" >/dev/null 2>&1 || missing=1; done
if [ "$missing" = 0 ]; then
    echo "install_slurm: SLURM and munge already installed"
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install_slurm: not root or no apt-get; install slurmctld slurmd slurm-client munge yourself" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# no recommends: slurm-wlm would pull in GUI tools; these four are what a one-node cluster needs
apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
echo "install_slurm: installed $(dpkg-query -W -f '${Package} ${Version} ' slurmctld slurmd slurm-client munge)"
