#!/usr/bin/env bash
# Start the docker engine (Debian's docker.io) when none answers; idempotent.
# Log: /var/log/eqmarl-dockerd.log. Needs root.
set -euo pipefail
if docker info >/dev/null 2>&1; then exit 0; fi
command -v dockerd >/dev/null || { echo "dockerd not found: apt-get install docker.io" >&2; exit 1; }
nohup dockerd >/var/log/eqmarl-dockerd.log 2>&1 &
for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && exit 0
    sleep 1
done
echo "dockerd did not answer within 60 s; see /var/log/eqmarl-dockerd.log" >&2
exit 1
