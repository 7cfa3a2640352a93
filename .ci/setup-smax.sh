#!/usr/bin/env bash
# Install what env.backend=smax (JaxMARL's SMAX) and tests/test_smax.py need, on top of the
# base install.  jaxmarl 0.2.0 declares gymnax, whose gymnasium<1.4 pin fights the
# gymnasium 1.4 that mpe2/VMAS bring; SMAX itself imports only jax, flax, chex, jaxtyping
# (and matplotlib, already installed), so jaxmarl goes in without its declared deps.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
pip install -q -c constraints.txt 'jax==0.10.2' 'flax==0.12.8' 'chex==0.1.92' 'jaxtyping==0.3.11' pillow
pip install -q -c constraints.txt --no-deps 'jaxmarl==0.2.0'
python -c "import jax, jaxmarl.environments.smax; print('smax ok: jax', jax.__version__)"
