#!/usr/bin/env bash
# CI: install DeepSpeed for the learner=deepspeed tests (tests/test_deepspeed*.py) and
# build its CPU shared-memory comm op once (first deepspeed.initialize JIT-compiles it
# with g++/ninja, ~40-160 s on 2 cores; cached under ~/.cache/torch_extensions), so no
# test pays for it. DS_BUILD_OPS=0: no ops at install time; the constraints keep the
# CPU torch (deepspeed must not pull another one). Called from .ci/run after the eqmarl install.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
DS_BUILD_OPS=0 pip install -q -c constraints.txt -e '.[deepspeed]'
DS_ACCELERATOR=cpu python - <<'PY'
from deepspeed.ops.op_builder.cpu import ShareMemCommBuilder

ShareMemCommBuilder().load(verbose=False)
print("deepspeed: shm comm op built")
PY
