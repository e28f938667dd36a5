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
# The tree is formatted with the ruff release .pre-commit-config.yaml names. Another release may lay code out
# differently without anything being wrong (the extra asks for ruff >= that release, with no cap), so with
# another release a formatting difference is reported as a warning, not a failure; lint rules stay strict.
formatted_with="$(sed -n '/ruff-pre-commit/{n;s/^ *rev: *v\{0,1\}\([0-9.]*\).*/\1/p;}' .pre-commit-config.yaml)"
installed="$(ruff --version | awk '{print $2}')"
if [ -z "$formatted_with" ] || [ "$installed" = "$formatted_with" ]; then
    ruff format --check "${paths[@]}" || status=1
elif ! ruff format --check "${paths[@]}"; then
    echo "lint: warning: ruff $installed would reformat the files above; the tree is formatted with ruff" \
        "$formatted_with (.pre-commit-config.yaml), so this is not a failure." >&2
fi
mypy || status=1
if [ "$status" -ne 0 ]; then
    echo "lint: failed (above). Fix it, or run ./run_tests.sh --no-lint to run the tests anyway." >&2
fi
exit "$status"
