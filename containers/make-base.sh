#!/usr/bin/env bash
# Make the local base image (a minimal Debian 12 made with debootstrap) for builds that
# cannot pull from a registry:  bash containers/make-base.sh [TAG]   (default eqmarl/base:bookworm)
# Then: docker build --build-arg BASE=eqmarl/base:bookworm ...   Needs root and a Debian mirror
# (DEBIAN_MIRROR, default deb.debian.org). Skips the work when TAG already exists.
set -euo pipefail
tag=${1:-eqmarl/base:bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
if docker image inspect "$tag" >/dev/null 2>&1; then echo "$tag exists"; exit 0; fi
root=$(mktemp -d /var/tmp/eqmarl-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase bookworm "$root" "$mirror" >/dev/null
# keep the image small: no apt lists or caches, no docs
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/usr/share/doc/* "$root"/usr/share/man/*
tar -C "$root" --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' -c . |
    docker import -c 'ENV LANG=C.UTF-8' -c 'CMD ["/bin/bash"]' - "$tag" >/dev/null
echo "$tag made from debootstrap bookworm ($mirror)"
