#!/usr/bin/env bash
# Install (if needed) and start a single-node SLURM cluster for CI tests.
#
#   sudo bash tests/slurm/start_cluster.sh
#
# - slurmctld + slurmd + slurmdbd (accounting in MariaDB) + munge
# - partitions: cpu (default, QOS "nogpu" refuses GPU requests) and gpu
# - the node advertises two *fake* GPUs (gres/gpu:2 backed by plain files)
#
# Idempotent: rerunning on a running cluster only (re)starts what is missing,
# and restarts the slurm daemons if a config file changed.
# Exit status 77 means "cannot run here" (not root, no apt-get): skip the tests.
# Daemons are started directly (no systemd needed); stop them with
# tests/slurm/stop_cluster.sh.
set -euo pipefail

SKIP=77
log() { printf '[start_cluster] %s\n' "$*" >&2; }
skip() { log "SKIP: $*"; exit "$SKIP"; }
die() { log "ERROR: $*"; exit 1; }

[[ "$(id -u)" -eq 0 ]] || skip "must run as root (uid is $(id -u))"
[[ "$(uname -s)" == Linux ]] || skip "needs Linux, found $(uname -s)"

CLUSTER=${SLURM_CI_CLUSTER:-echolatent}
ACCOUNT=${SLURM_CI_ACCOUNT:-echolatent}
DB_NAME=slurm_acct_db
DB_USER=slurm
DB_PASS=${SLURM_CI_DB_PASS:-slurmdbd-ci-only}
NGPU=${SLURM_CI_FAKE_GPUS:-2}
ETC=/etc/slurm
RUN=/run/slurm                 # pid files (tmpfs, recreated on each start)
STATE=/var/lib/slurm           # slurmctld state, slurmd spool, fake gpu files
LOGDIR=/var/log/slurm
MARK=/run/slurm-ci             # markers: which daemons this script started

# ---------------------------------------------------------------- packages
export DEBIAN_FRONTEND=noninteractive
PKGS=(slurm-wlm slurmctld slurmd slurm-client slurmdbd munge mariadb-server mariadb-client)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
    command -v apt-get >/dev/null || skip "apt-get not found and packages missing: ${missing[*]}"
    log "installing: ${missing[*]}"
    # Keep package scripts from starting daemons (no systemd in containers);
    # we start everything ourselves below.
    created_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        created_policy=1
    fi
    trap '[[ $created_policy == 1 ]] && rm -f /usr/sbin/policy-rc.d' EXIT
    # no package mirror reachable: this machine cannot host the test cluster (skip, with the reason)
    apt-get update -qq || skip "apt-get update failed (no package mirror?)"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
        || skip "apt-get install of ${missing[*]} failed"
    if [[ $created_policy == 1 ]]; then rm -f /usr/sbin/policy-rc.d; fi
    trap - EXIT
else
    log "packages already installed"
fi
for b in slurmctld slurmd slurmdbd sacctmgr sinfo munged mariadbd; do
    command -v "$b" >/dev/null || [[ -x /usr/sbin/$b ]] || die "$b not found after install"
done
export PATH=/usr/sbin:/usr/bin:$PATH

install -d -m 755 "$MARK"
install -d -o slurm -g slurm -m 755 "$RUN" "$STATE" "$STATE/slurmctld" "$LOGDIR"
install -d -o root -g root -m 755 "$STATE/slurmd"

# pid_alive PIDFILE NAME -> 0 if the pid in PIDFILE is a live process called NAME
pid_alive() {
    local pid
    [[ -s $1 ]] || return 1
    pid=$(<"$1")
    [[ -r /proc/$pid/comm ]] && [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$2" ]]
}

# write_if_changed DEST MODE OWNER  (content on stdin); sets CHANGED=1 if written
CHANGED=0
write_if_changed() {
    local dest=$1 mode=$2 owner=$3 tmp
    tmp=$(mktemp)
    cat >"$tmp"
    if [[ -f $dest ]] && cmp -s "$tmp" "$dest"; then
        rm -f "$tmp"
    else
        install -m "$mode" -o "${owner%:*}" -g "${owner#*:}" "$tmp" "$dest"
        rm -f "$tmp"
        CHANGED=1
        log "wrote $dest"
    fi
    chmod "$mode" "$dest"; chown "$owner" "$dest"
}

# ------------------------------------------------------------------- munge
if [[ ! -s /etc/munge/munge.key ]]; then
    log "creating munge key"
    if command -v mungekey >/dev/null; then
        mungekey --create --keyfile=/etc/munge/munge.key --force
    else
        dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
    fi
fi
chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
install -d -o munge -g munge -m 755 /run/munge
if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    log "munge already running"
else
    log "starting munged"
    runuser -u munge -- /usr/sbin/munged
    touch "$MARK/munge"
    for _ in $(seq 20); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.5; done
    munge -n | unmunge >/dev/null || die "munge does not work"
fi

# ----------------------------------------------------------------- mariadb
mysql_ok() { mariadb-admin --protocol=socket ping >/dev/null 2>&1; }
if mysql_ok; then
    log "mariadb already running"
else
    log "starting mariadb"
    install -d -o mysql -g mysql -m 755 /run/mysqld
    if [[ -x /etc/init.d/mariadb ]]; then
        # a session of its own: a CI step (or a tool) that kills its process group must not take MariaDB along
        setsid /etc/init.d/mariadb start >/dev/null || true
    fi
    if ! mysql_ok; then
        (cd / && setsid mysqld_safe >/dev/null 2>&1 &)
    fi
    touch "$MARK/mariadb"
    for _ in $(seq 60); do mysql_ok && break; sleep 1; done
    mysql_ok || die "mariadb did not start (see /var/log/mysql/ or syslog)"
fi
mariadb --protocol=socket <<SQL
CREATE DATABASE IF NOT EXISTS ${DB_NAME};
CREATE USER IF NOT EXISTS '${DB_USER}'@'localhost' IDENTIFIED BY '${DB_PASS}';
ALTER USER '${DB_USER}'@'localhost' IDENTIFIED BY '${DB_PASS}';
GRANT ALL ON ${DB_NAME}.* TO '${DB_USER}'@'localhost';
FLUSH PRIVILEGES;
SQL

# ------------------------------------------------------------- config files
HOST=$(hostname -s)
NCPU=$(nproc --all)  # --all: not lowered by OMP_NUM_THREADS (test runs set it to 1)
MEM_MB=$(awk '/^MemTotal:/ {print int($2/1024)}' /proc/meminfo)
REAL_MEM=$((MEM_MB * 90 / 100))
((REAL_MEM > 0)) || REAL_MEM=1000
DEF_MEM=$((REAL_MEM / NCPU)); ((DEF_MEM > 1024)) && DEF_MEM=1024
if getent hosts "$HOST" >/dev/null; then ADDR=""; else ADDR=" NodeAddr=127.0.0.1"; fi
CTLD_HOST=$HOST; [[ -n $ADDR ]] && CTLD_HOST="$HOST(127.0.0.1)"

write_if_changed "$ETC/slurmdbd.conf" 600 slurm:slurm <<EOF
# generated by tests/slurm/start_cluster.sh
AuthType=auth/munge
DbdHost=localhost
SlurmUser=slurm
PidFile=$RUN/slurmdbd.pid
LogFile=$LOGDIR/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=$DB_USER
StoragePass=$DB_PASS
StorageLoc=$DB_NAME
EOF
DBD_CHANGED=$CHANGED; CHANGED=0

# Fake GPUs: gres/gpu needs one File per device to bind GPUs to jobs and to
# set CUDA_VISIBLE_DEVICES. slurmd insists on a character/block device
# ("... is not a valid character or block device, fix your gres.conf") and
# numbers devices by the digits at the end of the name, so each fake GPU is a
# numbered symlink to /dev/null (no mknod needed inside containers).
GRES_LINES=""
for ((i = 0; i < NGPU; i++)); do
    [[ -L $STATE/fakegpu$i ]] || { rm -f "$STATE/fakegpu$i"; ln -s /dev/null "$STATE/fakegpu$i"; CHANGED=1; }
    GRES_LINES+="NodeName=$HOST Name=gpu File=$STATE/fakegpu$i"$'\n'
done
write_if_changed "$ETC/gres.conf" 644 root:root <<EOF
# generated by tests/slurm/start_cluster.sh -- fake GPUs for CI
AutoDetect=off
${GRES_LINES%$'\n'}
EOF

write_if_changed "$ETC/slurm.conf" 644 root:root <<EOF
# generated by tests/slurm/start_cluster.sh -- single-node CI cluster
ClusterName=$CLUSTER
SlurmctldHost=$CTLD_HOST
AuthType=auth/munge
SlurmUser=slurm
StateSaveLocation=$STATE/slurmctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOGDIR/slurmctld.log
SlurmdLogFile=$LOGDIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$DEF_MEM
GresTypes=gpu
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageEnforce=associations,limits,qos
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
JobCompType=jobcomp/none
InactiveLimit=0
KillWait=5
MinJobAge=300
SlurmctldTimeout=60
SlurmdTimeout=60
Waittime=0
NodeName=$HOST${ADDR} CPUs=$NCPU RealMemory=$REAL_MEM Gres=gpu:$NGPU State=UNKNOWN
PartitionName=cpu Nodes=$HOST Default=YES MaxTime=INFINITE State=UP QOS=nogpu
PartitionName=gpu Nodes=$HOST Default=NO MaxTime=INFINITE State=UP
EOF
SLURM_CHANGED=$CHANGED

# ---------------------------------------------------------------- slurmdbd
if pid_alive "$RUN/slurmdbd.pid" slurmdbd && [[ $DBD_CHANGED == 1 ]]; then
    log "slurmdbd.conf changed: restarting slurmdbd"
    kill "$(<"$RUN/slurmdbd.pid")"
    for _ in $(seq 30); do pid_alive "$RUN/slurmdbd.pid" slurmdbd || break; sleep 0.5; done
fi
if pid_alive "$RUN/slurmdbd.pid" slurmdbd; then
    log "slurmdbd already running"
else
    log "starting slurmdbd"
    slurmdbd
fi
for _ in $(seq 60); do sacctmgr -n show cluster >/dev/null 2>&1 && break; sleep 1; done
sacctmgr -n show cluster >/dev/null || die "slurmdbd not answering (see $LOGDIR/slurmdbd.log)"

# ------------------------------------------------------ accounting objects
has() { [[ -n "$(sacctmgr -n -P "$@" 2>/dev/null)" ]]; }
has show cluster "$CLUSTER" format=cluster || sacctmgr -i add cluster "$CLUSTER" >/dev/null
# QOS nogpu must exist before slurmctld reads the partition list; its
# gres/gpu limit can only be set once slurmctld has registered the gres/gpu
# TRES with slurmdbd (see below).
has show qos nogpu format=name || sacctmgr -i add qos nogpu >/dev/null
has show account "$ACCOUNT" format=account \
    || sacctmgr -i add account "$ACCOUNT" cluster="$CLUSTER" Description="CI tests" Organization=ci >/dev/null
USERS=(root)
[[ -n ${SUDO_USER:-} && ${SUDO_USER} != root ]] && USERS+=("$SUDO_USER")
for u in ${SLURM_CI_USERS:-}; do USERS+=("$u"); done
for u in "${USERS[@]}"; do
    has show assoc where cluster="$CLUSTER" account="$ACCOUNT" user="$u" format=user \
        || sacctmgr -i add user "$u" account="$ACCOUNT" cluster="$CLUSTER" >/dev/null
    sacctmgr -i modify user "$u" set DefaultAccount="$ACCOUNT" >/dev/null 2>&1 || true
done

# ------------------------------------------------------ slurmctld + slurmd
if [[ $SLURM_CHANGED == 1 ]]; then
    for d in slurmd slurmctld; do
        if pid_alive "$RUN/$d.pid" "$d"; then
            log "slurm.conf/gres.conf changed: restarting $d"
            kill "$(<"$RUN/$d.pid")"
            for _ in $(seq 30); do pid_alive "$RUN/$d.pid" "$d" || break; sleep 0.5; done
        fi
    done
fi
if pid_alive "$RUN/slurmctld.pid" slurmctld; then
    log "slurmctld already running"
else
    log "starting slurmctld"
    slurmctld
fi
for _ in $(seq 30); do scontrol ping 2>/dev/null | grep -q UP && break; sleep 1; done
for _ in $(seq 30); do has show tres type=gres name=gpu format=id && break; sleep 1; done
has show tres type=gres name=gpu format=id || die "slurmctld did not register TRES gres/gpu"
# DenyOnLimit: GPU requests in the cpu partition are rejected at submit time
# instead of pending forever.
if [[ "$(sacctmgr -n -P show qos nogpu format=MaxTRESPerJob,Flags)" != "gres/gpu=0|DenyOnLimit" ]]; then
    sacctmgr -i modify qos nogpu set MaxTRESPerJob=gres/gpu=0 Flags=DenyOnLimit >/dev/null
fi
[[ "$(sacctmgr -n -P show qos nogpu format=MaxTRESPerJob)" == "gres/gpu=0" ]] \
    || die "could not set MaxTRESPerJob=gres/gpu=0 on QOS nogpu"
if pid_alive "$RUN/slurmd.pid" slurmd; then
    log "slurmd already running"
else
    log "starting slurmd"
    slurmd
fi

# ------------------------------------------------------------------- wait
state=""
for i in $(seq 60); do
    state=$(sinfo -h -n "$HOST" -o %T 2>/dev/null | head -n1 || true)
    case $state in
        idle|mixed|allocated|completing) break ;;
        down*|drain*|fail*)
            ((i % 5 == 1)) && scontrol update NodeName="$HOST" State=RESUME 2>/dev/null || true ;;
    esac
    sleep 1
done
case $state in
    idle|mixed|allocated|completing) ;;
    *) sinfo -N -l >&2 || true
       die "node $HOST is '$state' (see $LOGDIR/slurmctld.log and slurmd.log)" ;;
esac
sacct -n -X -S now-1minutes >/dev/null || die "sacct does not work"
log "cluster '$CLUSTER' up: node $HOST ($NCPU CPUs, ${REAL_MEM} MB, gpu:$NGPU fake), partitions cpu (default, QOS nogpu) and gpu"
sinfo
