#!/usr/bin/env bash
# Build the CPU image here, without a registry: a debootstrap base (containers/make-base.sh),
# pip from PyPI plus this machine's local indexes (/opt/pypi*, /opt/wheels; served on
# 127.0.0.1 for the build), StarCraft II left out unless SC2_ACCEPT_LICENSE/SC2_URL are set.
#   bash containers/build-local.sh [TAG]            (default eqmarl:cpu)
# The image is tagged also eqmarl:src-<hash of its inputs>; a rerun with the same inputs
# builds nothing. EXTRAS (default mpe,cluster) and any --build-arg via BUILD_ARGS.
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${1:-eqmarl:cpu}
extras=${EXTRAS:-mpe,cluster}
bash containers/dockerd-up.sh
bash containers/make-base.sh eqmarl/base:bookworm
# the submitting Python's cloudpickle and submitit, so job pickles load on both sides
pins=${PIP_PINS-$(python3 -c 'import cloudpickle, submitit; print(f"cloudpickle=={cloudpickle.__version__} submitit=={submitit.__version__}")' 2>/dev/null || true)}
hash=$( (cat Dockerfile .dockerignore constraints.txt pyproject.toml launch.py containers/entrypoint.sh;
         echo "$extras ${BUILD_ARGS:-} $pins"; find src configs -type f ! -name '*.pyc' | sort | xargs cat) | sha256sum | cut -c1-12)
if docker image inspect "eqmarl:src-$hash" >/dev/null 2>&1; then
    docker tag "eqmarl:src-$hash" "$tag"
    echo "eqmarl:src-$hash (cached) -> $tag"
    exit 0
fi
args=(--build-arg BASE=eqmarl/base:bookworm --build-arg EXTRAS="$extras" --build-arg PIP_PINS="$pins")
server_pid=
if [ -d /opt/pypi/simple ] || [ -d /opt/wheels ]; then
    # a fixed port: the URLs are build arguments, and the same arguments reuse docker's layer cache
    port=${EQMARL_BUILD_PORT:-38765}
    www=$(mktemp -d)
    for d in pypi pypi-more wheels; do [ -d "/opt/$d" ] && ln -s "/opt/$d" "$www/$d"; done
    # this machine reaches PyPI through a TLS-intercepting proxy: give the build its CA bundle
    cp /etc/ssl/certs/ca-certificates.crt "$www/ca.crt"
    python3 -m http.server "$port" --bind 127.0.0.1 --directory "$www" >/dev/null 2>&1 &
    server_pid=$!
    trap 'kill $server_pid 2>/dev/null || true; rm -rf "$www"' EXIT
    args+=(--build-arg CA_BUNDLE_URL="http://127.0.0.1:$port/ca.crt")
    extra=""
    for d in pypi pypi-more; do [ -d "/opt/$d/simple" ] && extra="$extra http://127.0.0.1:$port/$d/simple"; done
    args+=(--build-arg PIP_EXTRA_INDEX_URL="${extra# }" --build-arg PIP_FIND_LINKS="http://127.0.0.1:$port/wheels/"
           --build-arg PIP_TRUSTED_HOST=127.0.0.1 --build-arg TORCH_INDEX_URL=)
    for _ in $(seq 20); do python3 -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$port/ca.crt')" 2>/dev/null && break; sleep 0.5; done
fi
# shellcheck disable=SC2086  # BUILD_ARGS is a list of words
docker build --network host "${args[@]}" ${BUILD_ARGS:-} -t "eqmarl:src-$hash" -t "$tag" .
echo "built eqmarl:src-$hash -> $tag"
# earlier builds' tags (their layers stay while another image uses them)
docker images --format '{{.Repository}}:{{.Tag}}' eqmarl | grep '^eqmarl:src-' | grep -v "^eqmarl:src-$hash\$" |
    xargs -r docker rmi >/dev/null 2>&1 || true
