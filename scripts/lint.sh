#!/usr/bin/env bash
# The lint step that ./run_tests.sh (and so CI, .ci/run) runs before the tests: seconds (under a minute
# the first time, while mypy fills .mypy_cache).
#   ruff check, ruff format --check  on the project's Python (notebooks excluded: running them checks them)
#   mypy                              on the library, lib/gradscorecam
# Settings: [tool.ruff] and [tool.mypy] in pyproject.toml, the same the pre-commit hooks read. ruff and mypy
# come with the [test] extra. To fix what it reports: `ruff format <paths>` and `ruff check --fix <paths>` do
# the mechanical part; the rest (and every mypy error) is a fix by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
paths=(lib scripts benchmarks tests .github/scripts)
status=0
ruff check "${paths[@]}" || status=1
ruff format --check "${paths[@]}" || status=1
mypy || status=1
if [ "$status" -ne 0 ]; then
    echo "lint: failed (above). Fix it, or run ./run_tests.sh --no-lint to run the tests anyway." >&2
fi
exit "$status"
