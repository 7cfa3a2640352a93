#!/usr/bin/env bash
# Job scripts below are single-quoted on purpose: they expand on the nodes.
# shellcheck disable=SC2016

# Smoke test for the loopback cluster started by up.sh. Submits real jobs:
#   1. sbatch -N 2 (batch script + srun step across n1 and n2), sacct says COMPLETED
#   2. srun -N 2 hostname
#   3. scancel --signal=USR2: a step that traps USR2 runs its handler
#      (and scancel --batch --signal=USR2 reaches a trapping batch script)
#   4. scontrol requeue of a --requeue job: it runs again (SLURM_RESTART_COUNT=1)
#   5. a submitit job (skipped when python cannot import submitit)
# Prints one line per check and exits non-zero on the first failure. ~40 s.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
source "$HERE/common.sh"
PART="$EQMARL_SLURM_PARTITION"
WORK="$(mktemp -d /tmp/eqmarl-slurm-check.XXXXXX)"
chmod 755 "$WORK"
JOBS=()
cleanup() {
    ((${#JOBS[@]} == 0)) || scancel "${JOBS[@]}" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

ok() { printf 'ok   %s\n' "$*"; }
fail() { printf 'FAIL %s\n' "$*"; exit 1; }

# wait_state JOBID STATE SECONDS: squeue state (R, PD...) or "gone".
wait_state() {
    local job="$1" want="$2" limit="$3" deadline=$((SECONDS + $3)) s
    while ((SECONDS < deadline)); do
        s="$(squeue -h -j "$job" -o %t 2>/dev/null || true)"
        [[ "$want" == gone && -z "$s" ]] && return 0
        [[ "$s" == "$want" ]] && return 0
        sleep 0.3
    done
    fail "job $job not $want after ${limit}s (squeue: '${s:-}')"
}

# sacct_state JOBID: the allocation's state once accounting has it.
sacct_state() {
    local job="$1" deadline=$((SECONDS + 20)) s=""
    while ((SECONDS < deadline)); do
        s="$(sacct -n -X -P -j "$job" -o State 2>/dev/null | tail -n 1)"
        [[ -n "$s" && "$s" != RUNNING && "$s" != PENDING ]] && break
        sleep 0.5
    done
    printf '%s\n' "$s"
}

timeout 10 scontrol ping | grep -q "is UP" || fail "slurmctld does not answer: run up.sh first"

# 1. two-node batch job
job="$(sbatch --parsable -p "$PART" -N 2 -o "$WORK/two-%j.out" \
    --wrap 'echo batch on $SLURMD_NODENAME; srun bash -c "echo step on \$SLURMD_NODENAME"; sleep 2')"
JOBS+=("$job")
wait_state "$job" gone 60
state="$(sacct_state "$job")"
[[ "$state" == COMPLETED ]] || fail "sbatch -N 2: job $job state '$state'"
if ! grep -q "step on n1" "$WORK/two-$job.out" || ! grep -q "step on n2" "$WORK/two-$job.out"; then
    fail "sbatch -N 2: step did not run on both nodes: $(cat "$WORK/two-$job.out")"
fi
ok "sbatch -N 2 (job $job): COMPLETED, step ran on n1 and n2"

# 2. interactive srun
out="$(timeout 60 srun -p "$PART" -N 2 -l bash -c 'echo $SLURMD_NODENAME' | sort)"
[[ "$out" == $'0: n1\n1: n2' ]] || fail "srun -N 2: got '$out'"
ok "srun -N 2: ran on n1 and n2"

# 3. USR2 to a trapping step, and to a trapping batch script
cat >"$WORK/trap.sh" <<'EOF'
#!/bin/bash
trap 'echo "trapped USR2"; exit 0' USR2
echo ready
for _ in $(seq 120); do sleep 1; done
echo "no signal"
EOF
chmod 755 "$WORK/trap.sh"
job="$(sbatch --parsable -p "$PART" -o "$WORK/usr2-%j.out" --wrap "srun $WORK/trap.sh")"
JOBS+=("$job")
wait_state "$job" R 30
sleep 2
scancel --signal=USR2 "$job"
wait_state "$job" gone 30
grep -q "trapped USR2" "$WORK/usr2-$job.out" || fail "USR2 (step): $(cat "$WORK/usr2-$job.out")"
ok "scancel --signal=USR2 (job $job): the step's trap ran"

job="$(sbatch --parsable -p "$PART" -o "$WORK/usr2b-%j.out" "$WORK/trap.sh")"
JOBS+=("$job")
wait_state "$job" R 30
sleep 2
scancel --batch --signal=USR2 "$job"
wait_state "$job" gone 30
grep -q "trapped USR2" "$WORK/usr2b-$job.out" || fail "USR2 (batch): $(cat "$WORK/usr2b-$job.out")"
ok "scancel --batch --signal=USR2 (job $job): the batch script's trap ran"

# 4. requeue
job="$(sbatch --parsable -p "$PART" --requeue --open-mode=append -o "$WORK/rq-%j.out" \
    --wrap 'echo "restart=${SLURM_RESTART_COUNT:-0}"; sleep 6')"
JOBS+=("$job")
wait_state "$job" R 30
sleep 1
scontrol requeue "$job"
t0=$SECONDS
wait_state "$job" gone 60
grep -q "restart=1" "$WORK/rq-$job.out" || fail "requeue: $(cat "$WORK/rq-$job.out")"
state="$(sacct_state "$job")"
[[ "$state" == COMPLETED ]] || fail "requeue: job $job final state '$state'"
ok "scontrol requeue (job $job): ran again with SLURM_RESTART_COUNT=1, COMPLETED ($((SECONDS - t0))s)"

# 5. submitit
PY="${PYTHON:-python3}"
if "$PY" -c 'import submitit' 2>/dev/null; then
    out="$(cd "$WORK" && timeout 120 "$PY" -c "
import submitit
ex = submitit.AutoExecutor(folder='$WORK/submitit')
ex.update_parameters(slurm_partition='$PART', timeout_min=5)
job = ex.submit(sum, [1, 2])
print(job.job_id, job.result())
")" || fail "submitit: $out"
    [[ "$out" == *" 3" ]] || fail "submitit: got '$out'"
    ok "submitit AutoExecutor (job ${out% *}): result 3"
else
    printf 'skip submitit (not importable by %s)\n' "$PY"
fi
JOBS=()
echo "all checks passed"
