#!/usr/bin/env bash
# Install a local Slurm (Debian slurm-wlm: slurmctld + slurmd + clients) and munge, so the
# test suite can start a real one-node cluster (scripts/slurm/local_cluster.py) and the Slurm
# backend is tested against the real daemons, not a mock.
# Idempotent and quiet: prints nothing when everything is already there. Only acts when root
# with apt-get; otherwise it does nothing and the Slurm tests skip with a reason.
set -euo pipefail

# The binaries local_cluster.py needs; a package is only installed when one of them is missing.
NEEDED_BINARIES=(slurmctld slurmd sbatch squeue scontrol scancel sinfo munged mungekey)
# slurm-wlm pulls slurmctld, slurmd and slurm-client; munge brings munged and mungekey.
APT_PACKAGES=(slurm-wlm munge)

missing=()
for bin in "${NEEDED_BINARIES[@]}"; do
    command -v "$bin" >/dev/null 2>&1 || [[ -x /usr/sbin/$bin ]] || missing+=("$bin")
done
(( ${#missing[@]} )) || exit 0

if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    echo "slurm/install.sh: missing ${missing[*]}; not root with apt-get, skipping" >&2
    exit 0
fi

apt-get update -qq
# --no-install-recommends: the recommends (mailutils, slurm-wlm-doc, …) are not needed here.
# The packages' postinst scripts try to start services; without systemd/invoke-rc.d policy they
# just fail softly, and local_cluster.py starts its own daemons anyway.
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${APT_PACKAGES[@]}" >/dev/null
