#!/usr/bin/env bash
# local_slurm.sh - a real single-node SLURM cluster on this machine, for tests.
#
#   bash tools/local_slurm.sh start    # install (Debian packages) if needed, configure, start, wait for idle node
#   bash tools/local_slurm.sh status   # exit 0 if the node is up, 1 otherwise
#   bash tools/local_slurm.sh stop     # cancel jobs, stop our daemons by pid file
#
# Meant for Debian 12 as root without systemd: the daemons are started by hand
# (munged, then MariaDB + slurmdbd for accounting, then slurmctld and slurmd)
# and tracked by pid files under $SLURM_LOCAL_DIR/run; nothing is ever killed
# by name. `start` is idempotent (a quick no-op when everything already runs).
# If it cannot work here (not root, no apt/dpkg) it exits 1 with one line on
# stderr saying why, so callers can skip.
#
# Environment knobs:
#   SLURM_LOCAL_DIR         state, logs, pid files, MariaDB datadir   [/tmp/slurm-local]
#   SLURM_LOCAL_ACCOUNTING  1 = slurmdbd + private MariaDB (sacct works; submitit
#                           needs it to notice cancelled jobs), 0 = none          [1]
#   SLURM_LOCAL_PARTITION   partition name                                     [debug]
#   SLURM_LOCAL_CLUSTER     cluster name                                       [localci]
#   SLURM_LOCAL_DB_PORT     MariaDB port, bound to 127.0.0.1                   [16819]
#   SLURM_LOCAL_WAIT_S      seconds `start` waits for the node to be idle      [60]
#   SLURM_LOCAL_PURGE       1 = `stop` also deletes SLURM_LOCAL_DIR            [0]
set -euo pipefail

DIR=${SLURM_LOCAL_DIR:-/tmp/slurm-local}
ACCOUNTING=${SLURM_LOCAL_ACCOUNTING:-1}
PARTITION=${SLURM_LOCAL_PARTITION:-debug}
CLUSTER=${SLURM_LOCAL_CLUSTER:-localci}
DB_PORT=${SLURM_LOCAL_DB_PORT:-16819}
WAIT_S=${SLURM_LOCAL_WAIT_S:-60}

RUN_DIR=$DIR/run
LOG_DIR=$DIR/log
DB_DIR=$DIR/mysql            # owned by the mysql user (mariadbd dies silently otherwise)
DB_SOCK=$DB_DIR/mysqld.sock
SLURM_CONF=/etc/slurm/slurm.conf
DBD_CONF=/etc/slurm/slurmdbd.conf
STAMP="# written by tools/local_slurm.sh"
DB_PASS=slurmdbpass
NODE=$(hostname -s)

note() { echo "local_slurm: $*" >&2; }
fail() { echo "local_slurm: $*" >&2; exit 1; }

# ----------------------------------------------------------------- helpers

# our_pid NAME: print the pid in $RUN_DIR/NAME.pid if that process is alive
# and really is NAME (protects against stale files and reused pids).
our_pid() {
    local file=$RUN_DIR/$1.pid pid
    [[ -s $file ]] || return 1
    pid=$(<"$file")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$1" ]] || return 1
    echo "$pid"
}
running() { our_pid "$1" >/dev/null; }

# wait_until SECONDS WHAT CMD...: poll CMD (quietly) until it succeeds.
wait_until() {
    local limit=$1 what=$2 deadline
    shift 2
    deadline=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || fail "timed out after ${limit}s waiting for $what (logs in $LOG_DIR)"
        sleep 0.2
    done
}

node_state() { sinfo -h -n "$NODE" -o %T 2>/dev/null || true; }
node_up() { [[ $(node_state) =~ ^(idle|mixed|allocated|completing) ]]; }

# install_file PATH MODE CONTENT: write CONTENT if it differs; a version that
# we did not write is kept as PATH.orig.<epoch>. Returns 0 if it changed.
install_file() {
    local path=$1 mode=$2 content=$3
    if [[ -f $path && $(<"$path") == "$content" ]]; then
        chmod "$mode" "$path"
        return 1
    fi
    if [[ -f $path ]] && ! grep -qxF "$STAMP" "$path"; then
        cp -a "$path" "$path.orig.$(date +%s)"
        note "kept the previous $path as $path.orig.*"
    fi
    mkdir -p "$(dirname "$path")"
    (umask 077 && printf '%s\n' "$content" >"$path")
    chmod "$mode" "$path"
}

# ----------------------------------------------------------------- packages

wanted_packages() {
    echo slurmctld slurmd slurm-client munge
    if [[ $ACCOUNTING == 1 ]]; then echo slurmdbd slurm-wlm-mysql-plugin mariadb-server; fi
}

install_packages() {
    local missing=() pkg added_policy=0
    for pkg in $(wanted_packages); do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
    done
    ((${#missing[@]})) || return 0
    command -v apt-get >/dev/null || fail "cannot start SLURM: packages missing (${missing[*]}) and apt-get is unavailable"
    note "installing ${missing[*]}"
    # policy-rc.d exit 101 keeps the package scripts from starting daemons.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        added_policy=1
    fi
    local ok=1
    {
        apt-get update -qq &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    } >"$LOG_DIR/apt.log" 2>&1 || ok=0
    if ((added_policy)); then rm -f /usr/sbin/policy-rc.d; fi
    ((ok)) || { tail -n 20 "$LOG_DIR/apt.log" >&2; fail "apt-get install failed (see $LOG_DIR/apt.log)"; }
}

# ----------------------------------------------------------------- configs

slurm_conf() {
    local cpus mem_mb
    cpus=$(nproc)
    mem_mb=$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.95)}' /proc/meminfo)
    cat <<EOF
$STAMP
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# a requeued job may start again only after cred_expire seconds (default 120)
AuthInfo=cred_expire=5
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
ReturnToService=2
SlurmctldPort=6817
SlurmdPort=6818
SlurmctldPidFile=$RUN_DIR/slurmctld.pid
SlurmdPidFile=$RUN_DIR/slurmd.pid
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
EOF
    if [[ $ACCOUNTING == 1 ]]; then
        printf '%s\n' AccountingStorageType=accounting_storage/slurmdbd AccountingStorageHost=localhost \
            AccountingStoragePort=6819 JobAcctGatherType=jobacct_gather/linux
    else
        printf '%s\n' AccountingStorageType=accounting_storage/none JobAcctGatherType=jobacct_gather/none
    fi
    cat <<EOF
JobCompType=jobcomp/none
InactiveLimit=0
# submitit ignores SIGTERM: scancel frees the CPUs only after KillWait seconds
KillWait=5
MinJobAge=300
SlurmctldTimeout=120
SlurmdTimeout=300
Waittime=0
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
}

slurmdbd_conf() {
    cat <<EOF
$STAMP
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=6819
SlurmUser=root
DebugLevel=info
LogFile=$LOG_DIR/slurmdbd.log
PidFile=$RUN_DIR/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
}

# write_configs: (re)write slurm.conf (which every client, sacctmgr included,
# reads) and slurmdbd.conf; sets *_CONF_CHANGED for the restarts below.
SLURM_CONF_CHANGED=0
DBD_CONF_CHANGED=0
write_configs() {
    if install_file "$SLURM_CONF" 644 "$(slurm_conf)"; then SLURM_CONF_CHANGED=1; fi
    if [[ $ACCOUNTING == 1 ]] && install_file "$DBD_CONF" 600 "$(slurmdbd_conf)"; then DBD_CONF_CHANGED=1; fi
}

# ----------------------------------------------------------------- daemons

munge_works() { munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munged() {
    if munge_works; then
        running munged || note "reusing a munged we did not start (stop will leave it alone)"
        return 0
    fi
    if [[ ! -s /etc/munge/munge.key ]]; then
        mungekey --create --force >/dev/null 2>&1 || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 2>/dev/null
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
    install -d -o munge -g munge -m 755 /run/munge
    runuser -u munge -- /usr/sbin/munged
    wait_until 20 munged munge_works
    cp /run/munge/munged.pid "$RUN_DIR/munged.pid"
}

db_sql() { mysql --no-defaults --socket="$DB_SOCK" -u root -e "$1"; }

start_mariadb() {
    install -d -o mysql -g mysql "$DB_DIR"
    if [[ ! -d $DB_DIR/data/mysql ]]; then
        mariadb-install-db --user=mysql --datadir="$DB_DIR/data" --auth-root-authentication-method=socket \
            --skip-test-db >"$LOG_DIR/mariadb-install-db.log" 2>&1 ||
            fail "mariadb-install-db failed (see $LOG_DIR/mariadb-install-db.log)"
    fi
    if ! running mariadbd; then
        # mariadbd stays in the foreground: detach it completely, or it keeps
        # the caller's stdout pipe open (`local_slurm.sh start | tail` hangs).
        (cd / && exec setsid -f /usr/sbin/mariadbd --no-defaults --user=mysql --datadir="$DB_DIR/data" \
            --socket="$DB_SOCK" --pid-file="$DB_DIR/mariadbd.pid" --log-error="$DB_DIR/mariadbd.log" \
            --bind-address=127.0.0.1 --port="$DB_PORT" --innodb-buffer-pool-size=128M) </dev/null >/dev/null 2>&1
        wait_until 60 "MariaDB (log $DB_DIR/mariadbd.log)" \
            mysqladmin --no-defaults --socket="$DB_SOCK" ping
        cp "$DB_DIR/mariadbd.pid" "$RUN_DIR/mariadbd.pid"
    fi
    if [[ ! -e $DB_DIR/slurm-user-created ]]; then
        local host
        for host in 127.0.0.1 localhost; do
            db_sql "CREATE USER IF NOT EXISTS 'slurm'@'$host' IDENTIFIED BY '$DB_PASS';
                    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'$host';"
        done
        touch "$DB_DIR/slurm-user-created"
    fi
}

start_slurmdbd() {
    if ((DBD_CONF_CHANGED)); then stop_daemon slurmdbd; fi # restarted below with the new config
    if ! running slurmdbd; then
        /usr/sbin/slurmdbd
        wait_until 60 slurmdbd sacctmgr -n list cluster
    fi
    if ! sacctmgr -n -P list cluster format=cluster | grep -qxF "$CLUSTER"; then
        sacctmgr -i add cluster "$CLUSTER" >/dev/null
    fi
}

start_slurm() {
    if ((SLURM_CONF_CHANGED)); then
        # the daemons read it only at startup: restart ours if they run
        stop_daemon slurmd
        stop_daemon slurmctld
    fi
    running slurmctld || /usr/sbin/slurmctld
    wait_until 30 slurmctld scontrol ping
    running slurmd || /usr/sbin/slurmd -N "$NODE"
}

# stop_daemon NAME: SIGTERM the process in our pid file, SIGKILL after 30 s.
stop_daemon() {
    local name=$1 pid
    if pid=$(our_pid "$name"); then
        kill -TERM "$pid" 2>/dev/null || true
        local deadline=$((SECONDS + 30))
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
        if kill -0 "$pid" 2>/dev/null; then
            note "$name (pid $pid) ignored SIGTERM for 30 s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        note "stopped $name (pid $pid)"
    fi
    rm -f "$RUN_DIR/$name.pid"
}

wait_for_node() {
    local deadline=$((SECONDS + WAIT_S)) state
    until node_up; do
        state=$(node_state)
        # a node left down/drained by an earlier run comes back on RESUME
        if [[ $state == down* || $state == drain* ]]; then
            scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true
        fi
        ((SECONDS < deadline)) ||
            fail "node $NODE not idle after ${WAIT_S}s (state '${state}'; logs in $LOG_DIR)"
        sleep 0.2
    done
}

# ----------------------------------------------------------------- commands

all_running() {
    local d
    for d in slurmctld slurmd; do running "$d" || return 1; done
    if [[ $ACCOUNTING == 1 ]]; then
        for d in mariadbd slurmdbd; do running "$d" || return 1; done
    fi
    munge_works
}

cmd_start() {
    ((EUID == 0)) || fail "cannot start SLURM: must run as root (uid $EUID)"
    command -v dpkg-query >/dev/null || fail "cannot start SLURM: dpkg is unavailable (not a Debian system?)"
    # quick path: nothing to do if our daemons run with the current config
    if all_running && [[ -f $SLURM_CONF && $(<"$SLURM_CONF") == "$(slurm_conf)" ]] && node_up; then
        note "already running (node $NODE: $(node_state))"
        return 0
    fi
    mkdir -p "$RUN_DIR" "$LOG_DIR" "$DIR/state" "$DIR/spool"
    chmod 755 "$DIR"
    install_packages
    write_configs
    start_munged
    if [[ $ACCOUNTING == 1 ]]; then
        start_mariadb
        start_slurmdbd
    fi
    start_slurm
    wait_for_node
    note "up after ${SECONDS}s: cluster $CLUSTER, partition $PARTITION, node $NODE ($(node_state))"
}

cancel_jobs() {
    running slurmctld || return 0
    local jobs
    jobs=$(squeue -h -o %A 2>/dev/null | tr '\n' ' ') || true
    [[ -n ${jobs// /} ]] || return 0
    note "cancelling jobs: $jobs"
    # shellcheck disable=SC2086  # one job id per word
    scancel $jobs 2>/dev/null || true
    local deadline=$((SECONDS + 30))
    while [[ -n $(squeue -h -o %A 2>/dev/null) ]] && ((SECONDS < deadline)); do sleep 0.3; done
}

cmd_stop() {
    if [[ -d $RUN_DIR ]]; then
        cancel_jobs
        local d
        # reverse start order; munged only if we started it (else no pid file)
        for d in slurmd slurmctld slurmdbd mariadbd munged; do stop_daemon "$d"; done
    fi
    if [[ ${SLURM_LOCAL_PURGE:-0} == 1 ]]; then
        rm -rf "$DIR"
        note "removed $DIR"
    fi
}

cmd_status() {
    local d pid
    for d in munged mariadbd slurmdbd slurmctld slurmd; do
        if pid=$(our_pid "$d"); then echo "$d: running (pid $pid)"; fi
    done
    if node_up; then
        echo "SLURM is running: node $NODE is $(node_state)"
    else
        echo "SLURM is not running"
        return 1
    fi
}

case ${1:-} in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
-h|--help)
    echo "usage: $0 start|stop|status"
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
    ;;
*)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
