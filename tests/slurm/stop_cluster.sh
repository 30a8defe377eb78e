#!/usr/bin/env bash
# Stop the single-node SLURM cluster started by tests/slurm/start_cluster.sh.
# Stops slurmd, slurmctld and slurmdbd (from their pid files), then MariaDB and
# munged if start_cluster.sh was the one that started them. Nothing is
# uninstalled; configuration, accounting database and job state are kept, so
# start_cluster.sh brings the same cluster back.
# Exit status 77 when not root.
set -euo pipefail

log() { printf '[stop_cluster] %s\n' "$*" >&2; }
[[ "$(id -u)" -eq 0 ]] || { log "SKIP: must run as root"; exit 77; }
export PATH=/usr/sbin:/usr/bin:$PATH

RUN=/run/slurm
MARK=/run/slurm-ci

# stop_pidfile PIDFILE NAME: SIGTERM the process, wait up to 30 s, then SIGKILL
stop_pidfile() {
    local pidfile=$1 name=$2 pid
    if [[ ! -s $pidfile ]]; then log "$name: no pid file"; return 0; fi
    pid=$(<"$pidfile")
    if [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" != "$name" ]]; then
        log "$name: not running (stale pid $pid)"; rm -f "$pidfile"; return 0
    fi
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 60); do
        [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$name" ]] || break
        sleep 0.5
    done
    if [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$name" ]]; then
        log "$name did not exit, sending SIGKILL"; kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}

stop_pidfile "$RUN/slurmd.pid" slurmd
stop_pidfile "$RUN/slurmctld.pid" slurmctld
stop_pidfile "$RUN/slurmdbd.pid" slurmdbd

if [[ -e $MARK/mariadb ]]; then
    log "stopping mariadb"
    if [[ -x /etc/init.d/mariadb ]]; then
        /etc/init.d/mariadb stop >/dev/null 2>&1 || mariadb-admin --protocol=socket shutdown || true
    else
        mariadb-admin --protocol=socket shutdown || true
    fi
    rm -f "$MARK/mariadb"
fi

if [[ -e $MARK/munge ]]; then
    pid=$(cat /run/munge/munged.pid 2>/dev/null || true)
    if [[ -n $pid && "$(cat "/proc/$pid/comm" 2>/dev/null)" == munged ]]; then
        log "stopping munged (pid $pid)"
        kill -TERM "$pid" || true
        for _ in $(seq 20); do [[ -d /proc/$pid ]] || break; sleep 0.5; done
    fi
    rm -f "$MARK/munge"
fi
log "stopped"
