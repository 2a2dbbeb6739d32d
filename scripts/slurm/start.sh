#!/usr/bin/env bash
# Start a local single-node Slurm cluster (munged + slurmctld + slurmd) for CI
# and tests. Run scripts/slurm/setup.sh first. Needs root; no systemd needed.
#
# Everything lives in a state folder, ESL_SLURM_DIR (default /tmp/esl-slurm):
#   slurm.conf, gres.conf    generated config (rewritten on every start)
#   env.sh                   `source` it to point sbatch/squeue/... at slurm.conf
#   state/ spool/            StateSaveLocation / SlurmdSpoolDir
#   *.pid *.log              daemon pid and log files
#
# Where the clients find the config: the daemons get `-f $ESL_SLURM_DIR/slurm.conf`,
# and callers export SLURM_CONF (env.sh does it). That is NOT enough for
# Snakemake: inside each job its slurm-jobstep plugin calls `srun` with all
# SLURM_* variables (SLURM_CONF too) removed, and srun then reads the built-in
# default /etc/slurm/slurm.conf. So start.sh also writes /etc/slurm/slurm.conf
# (+ gres.conf), but only when it does not exist yet or was written by this
# script before (it then carries the marker line below); a real system config
# is never touched (start.sh warns: Snakemake jobs would then talk to that
# cluster). stop.sh removes the files it owns again: a stale config pointing at
# a stopped controller makes every Snakemake start ~9 s slower (the slurm
# plugin runs `scontrol show config` at import time).
# Optional env: ESL_SLURM_DIR, ESL_SLURM_GPUS (fake GPUs on the node, default 1),
# ESL_SLURM_TIMEOUT (seconds to wait for the node to be idle, default 30),
# ESL_SLURM_NO_ETC=1 (never write /etc/slurm; enough for sbatch/squeue, not for Snakemake).
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"

DIR="${ESL_SLURM_DIR:-/tmp/esl-slurm}"
GPUS="${ESL_SLURM_GPUS:-1}"
TIMEOUT="${ESL_SLURM_TIMEOUT:-30}"
MARKER="# managed-by: esl scripts/slurm/start.sh (safe to delete)"
ETC_CONF=/etc/slurm/slurm.conf
ETC_GRES=/etc/slurm/gres.conf

die() {
    echo "start.sh: ERROR: $*" >&2
    exit 1
}
log() { echo "start.sh: $*"; }

[ "$(id -u)" -eq 0 ] || die "must run as root (SlurmUser=root, munged is started via su)"
for bin in slurmctld slurmd sinfo scontrol munged munge unmunge; do
    command -v "$bin" >/dev/null 2>&1 || die "'$bin' not found; run scripts/slurm/setup.sh first"
done
case "$GPUS" in '' | *[!0-9]*) die "ESL_SLURM_GPUS must be a non-negative integer, got '$GPUS'" ;; esac
# One distinct character device per fake GPU (regular files would schedule
# too, but then Slurm leaves CUDA_VISIBLE_DEVICES empty).
FAKE_GPU_DEVS=(/dev/null /dev/zero /dev/full /dev/random /dev/urandom)
[ "$GPUS" -le "${#FAKE_GPU_DEVS[@]}" ] || die "at most ${#FAKE_GPU_DEVS[@]} fake GPUs are supported (ESL_SLURM_GPUS=$GPUS)"

mkdir -p "$DIR" "$DIR/state" "$DIR/spool"
DIR="$(cd "$DIR" && pwd)"
CONF="$DIR/slurm.conf"
GRES="$DIR/gres.conf"
HOST="$(hostname -s)"
CPUS="$(nproc)"
MEM_TOTAL="$(free -m | awk '/^Mem:/ {print $2}')"
REAL_MEM=$((MEM_TOTAL * 80 / 100))
# Jobs that do not ask for memory would otherwise get the whole node
# (DefMemPerCPU=0 means "all memory" under CR_Core_Memory) and run one at a time.
DEF_MEM_PER_CPU=$((REAL_MEM / CPUS))
[ "$DEF_MEM_PER_CPU" -gt 1024 ] && DEF_MEM_PER_CPU=1024

pid_alive() { # pidfile
    [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

# ---------------------------------------------------------------- config files
if [ "$GPUS" -gt 0 ]; then
    NODE_GRES="Gres=gpu:$GPUS"
else
    NODE_GRES=""
fi

write_slurm_conf() { # path
    cat >"$1" <<EOF
$MARKER
# Single-node test cluster; state folder: $DIR
ClusterName=esl
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
SwitchType=switch/none
# No cgroups in containers / without systemd.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$DEF_MEM_PER_CPU
# Trust the CPUs/RealMemory below instead of marking the node INVAL when the
# detected topology differs (VMs, containers with CPU limits).
SlurmdParameters=config_overrides
ReturnToService=2
# No accounting: sacct does not work here, use squeue for job status.
# Finished jobs stay visible to squeue for MinJobAge seconds; the Snakemake
# slurm plugin needs >= 3 x slurm-init-seconds-before-status-checks.
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=300
InactiveLimit=0
KillWait=5
Waittime=0
GresTypes=gpu
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName=$HOST CPUs=$CPUS RealMemory=$REAL_MEM $NODE_GRES State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
}

write_gres_conf() { # path
    {
        echo "$MARKER"
        echo "# Fake GPUs: without File= the node goes INVAL."
        echo "AutoDetect=off"
        if [ "$GPUS" -gt 0 ]; then
            local IFS=,
            echo "NodeName=$HOST Name=gpu File=${FAKE_GPU_DEVS[*]:0:$GPUS}"
        fi
    } >"$1"
}

write_slurm_conf "$CONF"
write_gres_conf "$GRES"

cat >"$DIR/env.sh" <<EOF
# source this file so that sbatch/squeue/sinfo/scontrol (and Snakemake's slurm
# plugin, which calls them) use the local test cluster.
export ESL_SLURM_DIR="$DIR"
export SLURM_CONF="$CONF"
case ":\$PATH:" in *:/usr/sbin:*) ;; *) export PATH="\$PATH:/usr/sbin" ;; esac
EOF
export SLURM_CONF="$CONF"

# Default-location copy for srun inside Snakemake jobs and for callers that do
# not source env.sh (see header).
SM_WARN="Snakemake's slurm executor will NOT work with this test cluster (srun inside each job drops SLURM_CONF and reads $ETC_CONF)"
if [ "${ESL_SLURM_NO_ETC:-0}" = 1 ]; then
    log "WARNING: ESL_SLURM_NO_ETC=1: $ETC_CONF not written; $SM_WARN"
else
    mkdir -p /etc/slurm
    if [ ! -e "$ETC_CONF" ] || grep -qxF "$MARKER" "$ETC_CONF"; then
        write_slurm_conf "$ETC_CONF"
        echo "$ETC_CONF" >"$DIR/etc-files"
        if [ ! -e "$ETC_GRES" ] || grep -qxF "$MARKER" "$ETC_GRES"; then
            write_gres_conf "$ETC_GRES"
            echo "$ETC_GRES" >>"$DIR/etc-files"
        fi
        log "also wrote $ETC_CONF (srun inside jobs and callers without SLURM_CONF need it; stop.sh removes it)"
    else
        log "WARNING: $ETC_CONF exists and is not ours; left alone. sbatch/squeue work after 'source $DIR/env.sh', but $SM_WARN"
    fi
fi

# ---------------------------------------------------------------------- munge
if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
    log "munged already running"
else
    if [ ! -s /etc/munge/munge.key ]; then
        log "creating /etc/munge/munge.key"
        mungekey --create --keyfile=/etc/munge/munge.key
        chown munge:munge /etc/munge/munge.key
        chmod 0400 /etc/munge/munge.key
    fi
    mkdir -p /run/munge
    chown munge:munge /run/munge
    chmod 0755 /run/munge
    su -s /bin/sh munge -c /usr/sbin/munged || die "munged failed to start (see /var/log/munge/munged.log)"
    for _ in $(seq 50); do
        munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && break
        sleep 0.1
    done
    munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 || die "munged does not answer (see /var/log/munge/munged.log)"
    # We started it, so stop.sh may stop it.
    cp /run/munge/munged.pid "$DIR/munged.pid"
    log "munged started (pid $(cat "$DIR/munged.pid"))"
fi

# ---------------------------------------------------------- slurmctld, slurmd
if pid_alive "$DIR/slurmctld.pid"; then
    log "slurmctld already running (pid $(cat "$DIR/slurmctld.pid")); reconfiguring"
    scontrol reconfigure >/dev/null 2>&1 || true
else
    # -i: ignore (possibly stale) saved state; the config is authoritative.
    slurmctld -f "$CONF" -i || die "slurmctld failed to start; log: $DIR/slurmctld.log"
    for _ in $(seq 50); do
        pid_alive "$DIR/slurmctld.pid" && break
        sleep 0.1
    done
    pid_alive "$DIR/slurmctld.pid" || {
        tail -n 20 "$DIR/slurmctld.log" >&2 2>/dev/null || true
        die "slurmctld did not stay up; log: $DIR/slurmctld.log"
    }
    log "slurmctld started (pid $(cat "$DIR/slurmctld.pid"))"
fi

if pid_alive "$DIR/slurmd.pid"; then
    log "slurmd already running (pid $(cat "$DIR/slurmd.pid"))"
else
    slurmd -f "$CONF" || die "slurmd failed to start; log: $DIR/slurmd.log"
    for _ in $(seq 50); do
        pid_alive "$DIR/slurmd.pid" && break
        sleep 0.1
    done
    pid_alive "$DIR/slurmd.pid" || {
        tail -n 20 "$DIR/slurmd.log" >&2 2>/dev/null || true
        die "slurmd did not stay up; log: $DIR/slurmd.log"
    }
    log "slurmd started (pid $(cat "$DIR/slurmd.pid"))"
fi

# ------------------------------------------------------- wait for an idle node
start=$SECONDS
state=""
while :; do
    state="$(sinfo -h -n "$HOST" -o %t 2>/dev/null | head -n 1 || true)"
    case "$state" in
        idle | mix | alloc) break ;;
        inval* | drain* | drng* | down* | fail*)
            scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true
            ;;
    esac
    if [ $((SECONDS - start)) -ge "$TIMEOUT" ]; then
        reason="$(sinfo -h -R -n "$HOST" -o '%E' 2>/dev/null || true)"
        echo "start.sh: ERROR: node $HOST not idle after ${TIMEOUT}s (state='${state:-unknown}'${reason:+, reason: $reason}); logs: $DIR/slurmctld.log $DIR/slurmd.log" >&2
        exit 1
    fi
    sleep 0.5
done
log "node $HOST is $state (CPUs=$CPUS RealMemory=${REAL_MEM}M GPUs=$GPUS) after $((SECONDS - start))s"
log "use it with: source $DIR/env.sh"
