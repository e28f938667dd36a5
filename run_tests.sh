#!/usr/bin/env bash
# The test command of the README and of CI. Works on a fresh machine: creates .venv if no virtual
# environment is active, installs the project with its test extras, runs the lint step (scripts/lint.sh:
# ruff check, ruff format --check and mypy, settings in pyproject.toml; seconds, under a
# minute the first time while mypy fills .mypy_cache), then pytest.
# Arguments go to pytest, e.g. ./run_tests.sh -k gradcam -x
# --no-lint (any position) or GRADSCORECAM_NO_LINT=1 skips the lint step, e.g. mid-edit; CI never skips it.
set -euo pipefail
cd "$(dirname "$0")"
lint=1
[ "${GRADSCORECAM_NO_LINT:-0}" = 1 ] && lint=0
pytest_args=()
for arg in "$@"; do
    if [ "$arg" = --no-lint ]; then lint=0; else pytest_args+=("$arg"); fi
done
source scripts/ensure_env.sh
if [ "$lint" = 1 ]; then
    scripts/lint.sh
fi
# ${a[@]+...}: an empty array under `set -u` is an error in bash before 4.4 (macOS's bash 3.2)
python -m pytest ${pytest_args[@]+"${pytest_args[@]}"}
