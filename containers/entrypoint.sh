#!/bin/sh
# Image entrypoint: runs the given command (default: eqmarl doctor) as whatever user the
# runtime chose. HOME must be writable (W&B, matplotlib, torch caches); fall back to /tmp.
if [ -z "${HOME:-}" ] || [ "$HOME" = / ] || ! [ -w "$HOME" ]; then
    export HOME=/tmp
fi
exec "$@"
