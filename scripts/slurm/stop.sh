#!/usr/bin/env bash
# Stop the local test cluster started by scripts/slurm/start.sh: slurmd,
# slurmctld and (only if start.sh started it) munged, by the PIDs recorded in
# the state folder ${ESL_SLURM_DIR:-/tmp/esl-slurm}. Waits for them to exit.
# Also removes /etc/slurm/{slurm,gres}.conf if start.sh wrote them (a stale
# config there makes every slurm client, and Snakemake's slurm plugin at
# import time, wait for a controller that is gone).
# Idempotent: stopping a stopped cluster is fine. The state folder is kept
# (logs!); pass --purge to delete it as well.
set -euo pipefail

DIR="${ESL_SLURM_DIR:-/tmp/esl-slurm}"
WAIT="${ESL_SLURM_STOP_TIMEOUT:-20}"
MARKER="# managed-by: esl scripts/slurm/start.sh (safe to delete)"
PURGE=0
[ "${1:-}" = "--purge" ] && PURGE=1

log() { echo "stop.sh: $*"; }
rc=0

stop_pidfile() { # name pidfile
    local name="$1" pidfile="$2" pid i
    if [ ! -s "$pidfile" ]; then
        log "$name: no pid file ($pidfile), nothing to stop"
        return 0
    fi
    pid="$(cat "$pidfile")"
    case "$pid" in '' | *[!0-9]*)
        log "$name: bad pid file $pidfile"
        rm -f "$pidfile"
        return 0
        ;;
    esac
    if ! kill -0 "$pid" 2>/dev/null; then
        log "$name: pid $pid not running"
        rm -f "$pidfile"
        return 0
    fi
    # Guard against a recycled PID from a stale pid file.
    if [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm")" != "$name" ]; then
        log "$name: pid $pid is now '$(cat "/proc/$pid/comm")', not $name; stale pid file removed"
        rm -f "$pidfile"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < WAIT * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "$name: pid $pid ignored SIGTERM for ${WAIT}s, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
    fi
    if kill -0 "$pid" 2>/dev/null; then
        echo "stop.sh: ERROR: $name (pid $pid) is still running" >&2
        rc=1
    else
        log "$name (pid $pid) stopped"
        rm -f "$pidfile"
    fi
}

# Order matters: compute node, controller, then the auth daemon they use.
stop_pidfile slurmd "$DIR/slurmd.pid"
stop_pidfile slurmctld "$DIR/slurmctld.pid"
stop_pidfile munged "$DIR/munged.pid"

if [ -s "$DIR/etc-files" ]; then
    while read -r f; do
        if [ -n "$f" ] && [ -f "$f" ] && grep -qxF "$MARKER" "$f"; then
            rm -f "$f"
            log "removed $f"
        fi
    done <"$DIR/etc-files"
    rm -f "$DIR/etc-files"
fi

if [ "$PURGE" -eq 1 ] && [ "$rc" -eq 0 ] && [ -d "$DIR" ]; then
    rm -rf "$DIR"
    log "removed $DIR"
fi
exit "$rc"
