#!/usr/bin/env bash
# Install a local single-node Slurm (Debian packages) for CI and tests.
#
# Idempotent: does nothing when slurmctld, slurmd, sbatch and munged are
# already on PATH. Needs root (apt-get). Does not start anything; see start.sh.
set -euo pipefail

# Debian puts the daemons in /usr/sbin, which a non-login root shell may lack.
export PATH="$PATH:/usr/sbin:/sbin"

have_all() {
    local bin
    for bin in slurmctld slurmd sbatch munged; do
        command -v "$bin" >/dev/null 2>&1 || return 1
    done
}

# Note: `sbatch --version` needs a readable slurm.conf, so ask dpkg instead.
slurm_version() {
    dpkg-query -W -f='slurm ${Version}' slurm-client 2>/dev/null || echo "slurm version unknown"
}

if have_all; then
    echo "setup.sh: slurm and munge already installed ($(slurm_version))"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "setup.sh: ERROR: must run as root to apt-get install slurm/munge" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup.sh: ERROR: apt-get not found (only Debian/Ubuntu are supported)" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
PKGS=(slurmctld slurmd slurm-client munge)

# Only refresh the package lists when apt does not know a candidate version.
need_update=0
for pkg in "${PKGS[@]}"; do
    cand=$(apt-cache policy "$pkg" 2>/dev/null | awk '/Candidate:/ {print $2}')
    if [ -z "$cand" ] || [ "$cand" = "(none)" ]; then
        need_update=1
    fi
done
if [ "$need_update" -eq 1 ]; then
    echo "setup.sh: apt-get update"
    apt-get update -q
fi

echo "setup.sh: installing ${PKGS[*]}"
# Package maintainer scripts cannot start services without systemd; that is
# expected and harmless (start.sh starts the daemons by hand).
apt-get install -y -q --no-install-recommends "${PKGS[@]}"

if ! have_all; then
    echo "setup.sh: ERROR: install finished but slurmctld/slurmd/sbatch/munged are still not on PATH" >&2
    exit 1
fi
echo "setup.sh: done ($(slurm_version))"
