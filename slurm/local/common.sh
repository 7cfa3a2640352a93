# shellcheck shell=bash
# Shared settings and helpers for slurm/local/up.sh and slurm/local/down.sh.
# Sourced, not run. Every setting can be overridden from the environment.
# shellcheck disable=SC2034  # the variables are used by the scripts that source this

EQMARL_SLURM_CLUSTER="${EQMARL_SLURM_CLUSTER:-eqmarl}"
EQMARL_SLURM_PARTITION="${EQMARL_SLURM_PARTITION:-debug}"
# Where state, spool, database and logs live.
EQMARL_SLURM_STATE="${EQMARL_SLURM_STATE:-/var/lib/eqmarl-slurm}"
EQMARL_SLURM_LOGDIR="${EQMARL_SLURM_LOGDIR:-/var/log/eqmarl-slurm}"
EQMARL_SLURM_RUNDIR="${EQMARL_SLURM_RUNDIR:-/run/eqmarl-slurm}"
# Ports (slurmctld, slurmdbd, the two slurmd, MariaDB on 127.0.0.1).
EQMARL_SLURM_CTLD_PORT="${EQMARL_SLURM_CTLD_PORT:-6817}"
EQMARL_SLURM_DBD_PORT="${EQMARL_SLURM_DBD_PORT:-6819}"
EQMARL_SLURM_NODE_PORT0="${EQMARL_SLURM_NODE_PORT0:-17001}"
EQMARL_SLURM_DB_PORT="${EQMARL_SLURM_DB_PORT:-3307}"
EQMARL_SLURM_DB_NAME="${EQMARL_SLURM_DB_NAME:-slurm_acct_db}"
EQMARL_SLURM_DB_USER="${EQMARL_SLURM_DB_USER:-slurm}"
EQMARL_SLURM_DB_PASS="${EQMARL_SLURM_DB_PASS:-eqmarl-local-slurm}"
# How long up.sh waits for the cluster to answer, in seconds.
EQMARL_SLURM_WAIT="${EQMARL_SLURM_WAIT:-90}"

# The two fake nodes. Fixed at two: the slurm.conf node line and the
# `127.0.0.1 n1 n2` hosts entry are written for exactly these names.
EQMARL_SLURM_NODES=(n1 n2)

DB_DIR="$EQMARL_SLURM_STATE/mysql"
DB_SOCK="$EQMARL_SLURM_RUNDIR/mysql/mysqld.sock"
DB_PID="$EQMARL_SLURM_RUNDIR/mysql/mysqld.pid"
MUNGE_PID="/run/munge/munged.pid"
DBD_PID="$EQMARL_SLURM_RUNDIR/slurmdbd.pid"
CTLD_PID="$EQMARL_SLURM_RUNDIR/slurmctld.pid"
# slurmd expands %n to the node name given with -N.
SLURMD_PID_PATTERN="$EQMARL_SLURM_RUNDIR/slurmd-%n.pid"

say() { printf '[eqmarl-slurm] %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

# The pid recorded in a pid file, if that process is alive.
pid_from_file() {
    local file="$1" pid
    [[ -s "$file" ]] || return 1
    pid="$(tr -dc '0-9' <"$file")"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
    # A stale pid file whose number was reused by something else is not ours.
    [[ -r "/proc/$pid/comm" ]] || return 1
    printf '%s\n' "$pid"
}

is_running() { pid_from_file "$1" >/dev/null; }

# Print the last lines of a log file, to explain a failure.
show_log() {
    local file="$1" n="${2:-40}"
    if [[ -f "$file" ]]; then
        say "---- last $n lines of $file ----"
        tail -n "$n" "$file" >&2 || true
        say "---- end of $file ----"
    else
        say "(no log file at $file)"
    fi
}

# wait_until SECONDS DESCRIPTION COMMAND...: poll COMMAND every 0.2 s.
wait_until() {
    local limit="$1" what="$2"
    shift 2
    local deadline=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            say "timed out after ${limit}s waiting for: $what"
            return 1
        fi
        sleep 0.2
    done
}

# stop_pidfile NAME PIDFILE [SECONDS]: TERM the process, wait, then KILL.
stop_pidfile() {
    local name="$1" file="$2" limit="${3:-20}" pid deadline
    if ! pid="$(pid_from_file "$file")"; then
        rm -f "$file"
        return 0
    fi
    say "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + limit))
    while kill -0 "$pid" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            say "$name did not stop within ${limit}s; sending KILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.5
            break
        fi
        sleep 0.2
    done
    rm -f "$file"
}

node_pidfile() { printf '%s\n' "${SLURMD_PID_PATTERN//%n/$1}"; }
