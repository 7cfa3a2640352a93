#!/usr/bin/env bash
# Candidate settings for the embedded default (issue 18, MPE target), one run at a time on
# a quiet machine, each through benchmarks/default_learning.py (JSON per run, with the load):
#   bash benchmarks/mpe_default_candidates.sh OUT_DIR "SEEDS" [launch.py overrides...]
# A run whose JSON exists is skipped (a stopped sweep resumes).
set -euo pipefail
cd "$(dirname "$0")/.."
out=$1; seeds=$2; shift 2
mkdir -p "$out"
tag=$(printf '%s' "$*" | tr ' =/' '_-_')
for s in $seeds; do
  f="$out/${tag:-default}_s$s.json"
  [ -f "$f" ] && { echo "skip $f"; continue; }
  before=$(cut -d' ' -f1-3 /proc/loadavg)
  python benchmarks/default_learning.py --threshold -100 seed="$s" "$@" > "$f.tmp" 2>"$out/${tag:-default}_s$s.log"
  after=$(cut -d' ' -f1-3 /proc/loadavg)
  python - "$f.tmp" "$before" "$after" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); d["load_before"] = sys.argv[2]; d["load_after"] = sys.argv[3]
json.dump(d, open(sys.argv[1], "w"), indent=1)
PY
  mv "$f.tmp" "$f"
done
