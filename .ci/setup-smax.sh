#!/usr/bin/env bash
# SMAX (env.backend=smax, tests/test_smax*.py): the smax extra is the whole install now,
#   pip install -c constraints.txt -e '.[smax]'
# jaxmarl goes in with its declared dependencies: its gymnax caps gymnasium<1.4, which the
# mpe extra accepts (pettingzoo needs >=1.0), so pip resolves .[mpe,smax] to gymnasium 1.3.0
# by itself; constraints.txt pins the versions CI tests. .ci/run installs the extra first,
# so there this is only the check, which fails loudly (tests/test_smax*.py skip without jaxmarl).
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
check='import jax, gymnax, jaxmarl.environments.smax; print("smax ok: jax", jax.__version__)'
if ! python -c "$check" 2>/dev/null; then
  pip install -q -c constraints.txt -e '.[smax]'
  python -c "$check"
fi
