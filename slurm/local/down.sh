#!/usr/bin/env bash
# Stop the loopback SLURM cluster started by slurm/local/up.sh: both slurmd,
# slurmctld, slurmdbd, MariaDB and munged. Safe to run when nothing is running.
#
#   down.sh            cancel queued/running jobs, stop every daemon; keep state
#                      (accounting database, job history, munge key, configs)
#   down.sh --purge    also delete the state, database and logs, so the next
#                      up.sh starts from an empty cluster (packages stay installed)
#
#   EQMARL_SLURM_KEEP_JOBS=1  do not cancel jobs: queued jobs stay in slurmctld's
#                             saved state and running ones keep running (their
#                             slurmstepd outlives slurmd) and are picked up again
#                             by the next up.sh
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
source "$HERE/common.sh"

PURGE=0
case "${1:-}" in
    "") ;;
    --purge) PURGE=1 ;;
    -h | --help) sed -n '2,13p' "$0"; exit 0 ;;
    *) die "unknown argument: $1 (use --purge or nothing)" ;;
esac
[[ "$(id -u)" -eq 0 ]] || die "run as root"
# Purging deletes the spool directories, so nothing may be kept running.
((PURGE)) && EQMARL_SLURM_KEEP_JOBS=0

# 1. Jobs: cancel them while slurmctld still answers, and give them a moment.
if [[ "${EQMARL_SLURM_KEEP_JOBS:-0}" != 1 ]] && is_running "$CTLD_PID" \
    && command -v squeue >/dev/null && timeout 10 scontrol ping 2>/dev/null | grep -q "is UP"; then
    mapfile -t jobs < <(timeout 10 squeue -h -o '%A' 2>/dev/null || true)
    if ((${#jobs[@]} > 0)); then
        say "cancelling ${#jobs[@]} job(s)"
        timeout 10 scancel "${jobs[@]}" 2>/dev/null || true
        # shellcheck disable=SC2016  # expanded by the inner bash
        wait_until 15 "jobs to end" bash -c '[[ -z "$(squeue -h -o %A 2>/dev/null)" ]]' || true
    fi
fi

# 2. Job steps whose slurmd is going away. slurmstepd outlives slurmd by design
#    (a restarted slurmd picks its steps up again), so with EQMARL_SLURM_KEEP_JOBS=1
#    they are left running. Otherwise whatever survived the cancel is killed with
#    its whole process tree (the job's processes would be orphaned otherwise).
#    Only steps of this cluster (run in its log or spool dir) are touched.
stop_steps() {
    local dir pid ppid cwd rest i
    local -A parent=()
    local -a todo=() tree=()
    for dir in /proc/[0-9]*; do
        pid="${dir#/proc/}"
        # Field 4 of /proc/PID/stat is the parent pid (after the "(comm)" field).
        rest="$(cat "$dir/stat" 2>/dev/null)" || continue
        rest="${rest##*) }"
        ppid="$(cut -d' ' -f2 <<<"$rest")"
        parent[$pid]="$ppid"
        [[ "$(cat "$dir/comm" 2>/dev/null)" == slurmstepd ]] || continue
        cwd="$(readlink "$dir/cwd" 2>/dev/null || true)"
        case "$cwd" in
            "$EQMARL_SLURM_STATE" | "$EQMARL_SLURM_STATE"/* | "$EQMARL_SLURM_LOGDIR" | "$EQMARL_SLURM_LOGDIR"/*)
                todo+=("$pid") ;;
        esac
    done
    ((${#todo[@]} == 0)) && return 0
    # Breadth-first walk down from the slurmstepd processes.
    for ((i = 0; i < ${#todo[@]}; i++)); do
        tree+=("${todo[i]}")
        for pid in "${!parent[@]}"; do
            [[ "${parent[$pid]}" == "${todo[i]}" ]] && todo+=("$pid")
        done
    done
    if [[ "${EQMARL_SLURM_KEEP_JOBS:-0}" == 1 ]]; then
        say "leaving ${#tree[@]} job process(es) running (EQMARL_SLURM_KEEP_JOBS=1)"
        return 0
    fi
    say "killing ${#tree[@]} leftover job process(es) (slurmstepd and its children)"
    # slurmctld may still count these jobs as running: the next up.sh cancels them.
    for pid in "${tree[@]}"; do
        { tr '\0' ' ' <"/proc/$pid/cmdline"; echo; } 2>/dev/null | sed -n 's/^slurmstepd: \[\([0-9_]*\)\..*/\1/p'
    done | sort -u >>"$EQMARL_SLURM_STATE/killed-jobs" || true
    kill -TERM "${tree[@]}" 2>/dev/null || true
    sleep 2
    kill -KILL "${tree[@]}" 2>/dev/null || true
}

# 3. Daemons, in the reverse order of up.sh.
for n in "${EQMARL_SLURM_NODES[@]}"; do
    stop_pidfile "slurmd -N $n" "$(node_pidfile "$n")" &
done
wait
stop_steps
stop_pidfile slurmctld "$CTLD_PID" 30
stop_pidfile slurmdbd "$DBD_PID" 30
stop_pidfile MariaDB "$DB_PID" 60
rm -f "$DB_SOCK"
stop_pidfile munged "$MUNGE_PID"
rm -f /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock

if ((PURGE)); then
    say "purging $EQMARL_SLURM_STATE $EQMARL_SLURM_LOGDIR $EQMARL_SLURM_RUNDIR"
    rm -rf "$EQMARL_SLURM_STATE" "$EQMARL_SLURM_LOGDIR" "$EQMARL_SLURM_RUNDIR"
fi
say "local SLURM cluster is down"
