#!/usr/bin/env bash
# The test command of the README and of CI. Works on a fresh machine: creates .venv if no virtual
# environment is active, installs the project with its test extras, then runs pytest.
# Arguments go to pytest, e.g. ./run_tests.sh -k gradcam -x
set -euo pipefail
cd "$(dirname "$0")"
source scripts/ensure_env.sh
python -m pytest "$@"
