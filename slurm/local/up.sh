#!/usr/bin/env bash
# Bring up a real SLURM cluster on loopback: munge, MariaDB, slurmdbd, slurmctld
# and two slurmd (fake nodes n1 and n2 on 127.0.0.1), for tests and for trying
# eqmarl's cluster mode on one machine. Run as root. Safe to run again: whatever
# is already running is left alone (a changed config restarts what reads it).
#
# Settings (environment variables, defaults in brackets):
#   EQMARL_SLURM_CPUS      CPUs per fake node        [what `slurmd -C` reports]
#   EQMARL_SLURM_MEM_MB    RealMemory per fake node  [40% of the machine's memory]
#   EQMARL_SLURM_CLUSTER   cluster name              [eqmarl]
#   EQMARL_SLURM_PARTITION partition name            [debug]
#   EQMARL_SLURM_STATE     state/spool/database dir  [/var/lib/eqmarl-slurm]
#   EQMARL_SLURM_LOGDIR    daemon logs               [/var/log/eqmarl-slurm]
#   EQMARL_SLURM_CTLD_PORT / _DBD_PORT / _NODE_PORT0 / _DB_PORT
#                          [6817 / 6819 / 17001 (n2: +1) / 3307]
#   EQMARL_SLURM_WAIT      seconds to wait for the cluster to answer [90]
#   EQMARL_SLURM_NO_INSTALL=1  never call apt-get (fail if a package is missing)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
source "$HERE/common.sh"

T0=$SECONDS
[[ "$(id -u)" -eq 0 ]] || die "run as root (it installs packages and starts daemons)"

SLURM_CONF="/etc/slurm/slurm.conf"
DBD_CONF="/etc/slurm/slurmdbd.conf"
# Make sure the client tools read the file this script writes.
unset SLURM_CONF_OVERRIDE || true
export SLURM_CONF

# ---------------------------------------------------------------- packages
PACKAGES=(munge slurmctld slurmd slurm-client slurmdbd slurm-wlm-mysql-plugin
          mariadb-server mariadb-client)

install_packages() {
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        if [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]]; then
            missing+=("$p")
        fi
    done
    ((${#missing[@]} == 0)) && return 0
    [[ "${EQMARL_SLURM_NO_INSTALL:-0}" == 1 ]] && die "missing packages: ${missing[*]}"
    say "installing: ${missing[*]}"
    # No init system here: keep package scripts from trying to start services.
    local made_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        made_policy=1
    fi
    local log="$EQMARL_SLURM_LOGDIR/apt.log" rc=0
    export DEBIAN_FRONTEND=noninteractive
    local apt=(apt-get install -y -q --no-install-recommends
               -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
    if ! "${apt[@]}" "${missing[@]}" >"$log" 2>&1; then
        say "apt-get install failed; refreshing the package lists and trying again"
        { apt-get update -q && "${apt[@]}" "${missing[@]}"; } >>"$log" 2>&1 || rc=$?
    fi
    ((made_policy)) && rm -f /usr/sbin/policy-rc.d
    if ((rc != 0)); then
        show_log "$log" 30
        die "could not install ${missing[*]}"
    fi
}

# ------------------------------------------------------------------- dirs
prepare_dirs() {
    id slurm >/dev/null 2>&1 || die "user slurm missing (the slurm packages create it)"
    id munge >/dev/null 2>&1 || die "user munge missing (the munge package creates it)"
    id mysql >/dev/null 2>&1 || die "user mysql missing (mariadb-server creates it)"
    install -d -m 755 -o slurm -g slurm "$EQMARL_SLURM_STATE" "$EQMARL_SLURM_LOGDIR" \
        "$EQMARL_SLURM_RUNDIR" "$EQMARL_SLURM_STATE/ctld" "$EQMARL_SLURM_STATE/dbd"
    local n
    for n in "${EQMARL_SLURM_NODES[@]}"; do
        install -d -m 755 -o root -g root "$EQMARL_SLURM_STATE/slurmd-$n"
    done
    install -d -m 750 -o mysql -g mysql "$DB_DIR"
    install -d -m 755 -o mysql -g mysql "$(dirname "$DB_SOCK")"
    install -d -m 755 /etc/slurm
}

# ------------------------------------------------------------------ munge
start_munge() {
    install -d -m 700 -o munge -g munge /etc/munge
    install -d -m 700 -o munge -g munge /var/lib/munge /var/log/munge
    install -d -m 755 -o munge -g munge /run/munge
    if [[ ! -s /etc/munge/munge.key ]]; then
        say "creating munge key"
        mungekey --create --keyfile=/etc/munge/munge.key
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
    if is_running "$MUNGE_PID" && munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
        return 0
    fi
    # A leftover socket or pid file from a killed munged blocks a new one.
    rm -f "$MUNGE_PID" /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock
    say "starting munged"
    if ! runuser -u munge -- /usr/sbin/munged </dev/null >/dev/null 2>&1; then
        show_log /var/log/munge/munged.log
        die "munged failed to start"
    fi
    if ! wait_until 15 "munge to answer" bash -c 'munge -n </dev/null | unmunge'; then
        show_log /var/log/munge/munged.log
        die "munged does not answer"
    fi
}

# ---------------------------------------------------------------- MariaDB
db() { mariadb --no-defaults -S "$DB_SOCK" -u root; }

start_mariadb() {
    local log="$EQMARL_SLURM_LOGDIR/mariadb.log"
    if [[ ! -d "$DB_DIR/mysql" ]]; then
        say "initialising MariaDB data directory $DB_DIR"
        if ! mariadb-install-db --no-defaults --user=mysql --datadir="$DB_DIR" \
                --auth-root-authentication-method=socket --skip-test-db \
                >"$EQMARL_SLURM_LOGDIR/mariadb-install.log" 2>&1; then
            show_log "$EQMARL_SLURM_LOGDIR/mariadb-install.log"
            die "mariadb-install-db failed"
        fi
    fi
    if ! is_running "$DB_PID"; then
        rm -f "$DB_PID" "$DB_SOCK"
        say "starting MariaDB on 127.0.0.1:$EQMARL_SLURM_DB_PORT"
        # Own data directory, socket and port: leaves any system MariaDB alone.
        setsid /usr/sbin/mariadbd --no-defaults --user=mysql --datadir="$DB_DIR" \
            --socket="$DB_SOCK" --pid-file="$DB_PID" \
            --port="$EQMARL_SLURM_DB_PORT" --bind-address=127.0.0.1 --skip-name-resolve \
            --log-error="$log" --innodb-use-native-aio=0 \
            --innodb-buffer-pool-size=128M --innodb-log-file-size=64M \
            --innodb-lock-wait-timeout=900 --max-connections=64 \
            </dev/null >>"$log" 2>&1 &
        disown || true
    fi
    if ! wait_until 60 "MariaDB to answer" mariadb-admin --no-defaults -S "$DB_SOCK" -u root ping; then
        show_log "$log"
        die "MariaDB failed to start"
    fi
    local u="$EQMARL_SLURM_DB_USER" p="${EQMARL_SLURM_DB_PASS//\'/\'\'}" d="$EQMARL_SLURM_DB_NAME"
    db <<SQL || { show_log "$log"; die "could not create the accounting database"; }
CREATE DATABASE IF NOT EXISTS \`$d\`;
CREATE USER IF NOT EXISTS '$u'@'localhost' IDENTIFIED BY '$p';
CREATE USER IF NOT EXISTS '$u'@'127.0.0.1' IDENTIFIED BY '$p';
ALTER USER '$u'@'localhost' IDENTIFIED BY '$p';
ALTER USER '$u'@'127.0.0.1' IDENTIFIED BY '$p';
GRANT ALL PRIVILEGES ON \`$d\`.* TO '$u'@'localhost';
GRANT ALL PRIVILEGES ON \`$d\`.* TO '$u'@'127.0.0.1';
FLUSH PRIVILEGES;
SQL
}

# ---------------------------------------------------------------- configs
SLURM_CONF_CHANGED=0
DBD_CONF_CHANGED=0

# write_file PATH MODE OWNER: write stdin there if it differs; status 0 if changed.
write_file() {
    local path="$1" mode="$2" owner="$3" tmp
    tmp="$(mktemp "$path.XXXXXX")"
    cat >"$tmp"
    chmod "$mode" "$tmp"
    chown "$owner" "$tmp"
    if [[ -f "$path" ]] && cmp -s "$tmp" "$path"; then
        rm -f "$tmp"
        chmod "$mode" "$path"
        chown "$owner" "$path"
        return 1
    fi
    mv -f "$tmp" "$path"
    return 0
}

detect_hardware() {
    local probe
    probe="$(slurmd -C 2>/dev/null | head -n 1 || true)"
    HW_CPUS="$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$probe")"
    HW_MEM="$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$probe")"
    [[ -n "$HW_CPUS" ]] || HW_CPUS="$(nproc)"
    if [[ -z "$HW_MEM" ]]; then
        HW_MEM="$(awk '/^MemTotal:/ {print int($2/1024)}' /proc/meminfo)"
    fi
    NODE_CPUS="${EQMARL_SLURM_CPUS:-$HW_CPUS}"
    # Both fake nodes share this machine: 40% each leaves room for everything else.
    NODE_MEM="${EQMARL_SLURM_MEM_MB:-$((HW_MEM * 40 / 100))}"
    [[ "$NODE_CPUS" =~ ^[1-9][0-9]*$ ]] || die "EQMARL_SLURM_CPUS must be a positive integer"
    [[ "$NODE_MEM" =~ ^[1-9][0-9]*$ ]] || die "EQMARL_SLURM_MEM_MB must be a positive integer"
}

write_configs() {
    local last_port=$((EQMARL_SLURM_NODE_PORT0 + ${#EQMARL_SLURM_NODES[@]} - 1))
    if write_file "$SLURM_CONF" 644 root:root <<CONF; then SLURM_CONF_CHANGED=1; fi
# Written by eqmarl slurm/local/up.sh: a two-node SLURM cluster on loopback.
# Edits are overwritten on the next run; change the EQMARL_SLURM_* variables instead.
ClusterName=$EQMARL_SLURM_CLUSTER
SlurmctldHost=localhost
SlurmctldPort=$EQMARL_SLURM_CTLD_PORT
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# A requeued job may start again after 5 s instead of the default 120 s.
AuthInfo=cred_expire=5

StateSaveLocation=$EQMARL_SLURM_STATE/ctld
SlurmdSpoolDir=$EQMARL_SLURM_STATE/slurmd-%n
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID_PATTERN
SlurmctldLogFile=$EQMARL_SLURM_LOGDIR/slurmctld.log
SlurmdLogFile=$EQMARL_SLURM_LOGDIR/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info

# No cgroups on these machines.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
PropagateResourceLimits=NONE
SlurmdParameters=config_overrides
ReturnToService=2
MailProg=/bin/true

SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1,bf_interval=1
JobRequeue=1
PreemptType=preempt/none
KillWait=30
InactiveLimit=0
MinJobAge=300
SlurmctldTimeout=120
SlurmdTimeout=300

AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$EQMARL_SLURM_DBD_PORT
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
JobCompType=jobcomp/none

NodeName=n[1-${#EQMARL_SLURM_NODES[@]}] NodeHostname=localhost NodeAddr=127.0.0.1 Port=$EQMARL_SLURM_NODE_PORT0-$last_port CPUs=$NODE_CPUS RealMemory=$NODE_MEM State=UNKNOWN
PartitionName=$EQMARL_SLURM_PARTITION Nodes=n[1-${#EQMARL_SLURM_NODES[@]}] Default=YES MaxTime=INFINITE State=UP
CONF

    if write_file "$DBD_CONF" 600 slurm:slurm <<CONF; then DBD_CONF_CHANGED=1; fi
# Written by eqmarl slurm/local/up.sh.
AuthType=auth/munge
DbdHost=localhost
DbdPort=$EQMARL_SLURM_DBD_PORT
SlurmUser=slurm
LogFile=$EQMARL_SLURM_LOGDIR/slurmdbd.log
PidFile=$DBD_PID
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$EQMARL_SLURM_DB_PORT
StorageUser=$EQMARL_SLURM_DB_USER
StoragePass=$EQMARL_SLURM_DB_PASS
StorageLoc=$EQMARL_SLURM_DB_NAME
CONF
    return 0
}

add_hosts_entry() {
    local n absent=0
    for n in "${EQMARL_SLURM_NODES[@]}"; do
        grep -Eq "^[[:space:]]*127\.0\.0\.1([[:space:]].*)?[[:space:]]$n([[:space:]]|\$)" /etc/hosts || absent=1
    done
    if ((absent)); then
        say "adding '127.0.0.1 ${EQMARL_SLURM_NODES[*]}' to /etc/hosts"
        # Keep the file's own inode (it may be bind-mounted into a container).
        [[ -z "$(tail -c 1 /etc/hosts)" ]] || printf '\n' >>/etc/hosts
        printf '127.0.0.1 %s\n' "${EQMARL_SLURM_NODES[*]}" >>/etc/hosts
    fi
}

# ---------------------------------------------------------- slurm daemons
start_slurmdbd() {
    local log="$EQMARL_SLURM_LOGDIR/slurmdbd.log"
    if ((DBD_CONF_CHANGED)) && is_running "$DBD_PID"; then
        say "slurmdbd.conf changed: restarting slurmdbd"
        stop_pidfile slurmdbd "$DBD_PID"
    fi
    if ! is_running "$DBD_PID"; then
        say "starting slurmdbd"
        if ! slurmdbd </dev/null >>"$log" 2>&1; then
            show_log "$log"
            die "slurmdbd failed to start"
        fi
    fi
    if ! wait_until 60 "slurmdbd to answer" sacctmgr -n -P list cluster format=cluster; then
        show_log "$log"
        die "slurmdbd does not answer"
    fi
    if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$EQMARL_SLURM_CLUSTER"; then
        say "registering cluster $EQMARL_SLURM_CLUSTER in accounting"
        sacctmgr -i add cluster "$EQMARL_SLURM_CLUSTER" >/dev/null
    fi
}

start_slurmctld() {
    local log="$EQMARL_SLURM_LOGDIR/slurmctld.log" n
    if ((SLURM_CONF_CHANGED)) && is_running "$CTLD_PID"; then
        say "slurm.conf changed: restarting slurmctld and slurmd"
        for n in "${EQMARL_SLURM_NODES[@]}"; do
            stop_pidfile "slurmd -N $n" "$(node_pidfile "$n")"
        done
        stop_pidfile slurmctld "$CTLD_PID"
    fi
    if ! is_running "$CTLD_PID"; then
        say "starting slurmctld"
        if ! slurmctld </dev/null >>"$log" 2>&1; then
            show_log "$log"
            die "slurmctld failed to start"
        fi
    fi
    if ! wait_until 60 "slurmctld to answer" bash -c 'scontrol ping | grep -q "is UP"'; then
        show_log "$log"
        die "slurmctld does not answer"
    fi
}

# Epoch second at which this run started each slurmd (0: it was already running).
declare -A SLURMD_STARTED_AT=()

start_slurmd() {
    local n pidfile log
    for n in "${EQMARL_SLURM_NODES[@]}"; do
        SLURMD_STARTED_AT[$n]=0
        pidfile="$(node_pidfile "$n")"
        log="$EQMARL_SLURM_LOGDIR/slurmd-$n.log"
        is_running "$pidfile" && continue
        say "starting slurmd -N $n"
        SLURMD_STARTED_AT[$n]="$(date +%s)"
        if ! slurmd -N "$n" </dev/null >>"$log" 2>&1; then
            show_log "$log"
            die "slurmd -N $n failed to start"
        fi
    done
}

# The node's slurmd has registered with slurmctld since this run started it.
# (A slurmctld that kept running still shows a node idle for SlurmdTimeout
# seconds after its slurmd went away, so the state alone is not enough.)
registered() {
    local n="$1" t
    t="$(scontrol -o show node "$n" 2>/dev/null | sed -n 's/.* SlurmdStartTime=\([^ ]*\).*/\1/p')"
    [[ -n "$t" && "$t" != None ]] || return 1
    t="$(date -d "$t" +%s 2>/dev/null)" || return 1
    ((t >= ${SLURMD_STARTED_AT[$n]:-0}))
}

# Both nodes respond (idle, or busy with jobs left from before).
nodes_ready() {
    local states bad=0 n s
    states="$(sinfo -h -N -p "$EQMARL_SLURM_PARTITION" -o '%N %t')" || return 1
    for n in "${EQMARL_SLURM_NODES[@]}"; do
        s="$(awk -v n="$n" '$1 == n {print $2}' <<<"$states")"
        case "$s" in
            idle | mix | alloc | comp) registered "$n" || bad=1 ;;
            *) bad=1 ;;
        esac
    done
    return "$bad"
}

wait_for_cluster() {
    local deadline=$((SECONDS + EQMARL_SLURM_WAIT)) resumed_at=$SECONDS n s states
    until nodes_ready; do
        # A node left down or drained by an earlier run (or a config change) is
        # told to resume once its slurmd is up and has had a moment to register.
        if ((SECONDS - resumed_at >= 5)); then
            states="$(sinfo -h -N -p "$EQMARL_SLURM_PARTITION" -o '%N %t' 2>/dev/null || true)"
            for n in "${EQMARL_SLURM_NODES[@]}"; do
                s="$(awk -v n="$n" '$1 == n {print $2}' <<<"$states")"
                case "$s" in
                    down | drain | drng | drain\* | down\* | inval | fail)
                        say "node $n is '$s': resuming it"
                        scontrol update NodeName="$n" State=RESUME >/dev/null 2>&1 || true ;;
                esac
            done
            resumed_at=$SECONDS
        fi
        if ((SECONDS >= deadline)); then
            sinfo -N -l >&2 || true
            scontrol show node >&2 || true
            for n in "${EQMARL_SLURM_NODES[@]}"; do
                show_log "$EQMARL_SLURM_LOGDIR/slurmd-$n.log" 20
            done
            show_log "$EQMARL_SLURM_LOGDIR/slurmctld.log" 30
            die "nodes not ready after ${EQMARL_SLURM_WAIT}s"
        fi
        sleep 0.3
    done
    # slurmctld registers itself with slurmdbd (ControlHost filled in); then sacct answers.
    if ! wait_until 30 "slurmctld to register with slurmdbd" bash -c \
        "sacctmgr -n -P list cluster format=cluster,controlhost | grep -q '^$EQMARL_SLURM_CLUSTER|.'"; then
        show_log "$EQMARL_SLURM_LOGDIR/slurmctld.log" 30
        show_log "$EQMARL_SLURM_LOGDIR/slurmdbd.log" 30
        die "slurmctld did not register with slurmdbd"
    fi
    if ! wait_until 30 "sacct to answer" sacct -n -X -S now-1minutes -o JobID; then
        show_log "$EQMARL_SLURM_LOGDIR/slurmdbd.log" 30
        die "sacct does not answer"
    fi
}

# Jobs whose processes down.sh had to kill (slurmctld was not answering then)
# would otherwise stay RUNNING forever: a node forgets them only on reboot.
cancel_killed_jobs() {
    local file="$EQMARL_SLURM_STATE/killed-jobs" ids
    [[ -s "$file" ]] || { rm -f "$file"; return 0; }
    mapfile -t ids < <(sort -u "$file")
    say "cancelling job(s) whose processes down.sh killed: ${ids[*]}"
    scancel "${ids[@]}" 2>/dev/null || true
    rm -f "$file"
}

# ------------------------------------------------------------------- main
install -d -m 755 "$EQMARL_SLURM_LOGDIR"
install_packages
prepare_dirs
start_munge
start_mariadb
detect_hardware
write_configs
add_hosts_entry
start_slurmdbd
start_slurmctld
start_slurmd
wait_for_cluster
cancel_killed_jobs

printf 'eqmarl local SLURM up in %ss: cluster %s, partition %s, nodes %s (%s CPUs, %s MB each), slurmctld :%s, slurmdbd :%s, MariaDB 127.0.0.1:%s, logs %s\n' \
    "$((SECONDS - T0))" "$EQMARL_SLURM_CLUSTER" "$EQMARL_SLURM_PARTITION" \
    "$(IFS=,; echo "${EQMARL_SLURM_NODES[*]}")" "$NODE_CPUS" "$NODE_MEM" \
    "$EQMARL_SLURM_CTLD_PORT" "$EQMARL_SLURM_DBD_PORT" "$EQMARL_SLURM_DB_PORT" \
    "$EQMARL_SLURM_LOGDIR"
