# Sourced by run_tests.sh and run_all.sh: make sure a Python environment with the project is active.
#
# - A virtual environment or a non-base conda environment that is already active is used as it is
#   (conda users: `conda env create -f environment.yml && conda activate gradscorecam`).
# - Otherwise .venv/ in the repository is created (with $PYTHON, default python3) and activated.
# The project is (re)installed with every extra (notebooks, explorer, test) whenever pyproject.toml changed
# since the last install.

_repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if [ -n "${VIRTUAL_ENV:-}" ]; then
    :
elif [ -n "${CONDA_PREFIX:-}" ] && [ "${CONDA_DEFAULT_ENV:-base}" != "base" ]; then
    :
else
    if [ ! -x "$_repo_root/.venv/bin/python" ]; then
        "${PYTHON:-python3}" - <<'PY' || { echo "error: Python >= 3.10 is needed (set PYTHON=/path/to/python3.11)" >&2; exit 1; }
import sys
sys.exit(0 if sys.version_info >= (3, 10) else 1)
PY
        echo "Creating a virtual environment in .venv (first run only) ..." >&2
        "${PYTHON:-python3}" -m venv "$_repo_root/.venv"
    fi
    # shellcheck disable=SC1091
    source "$_repo_root/.venv/bin/activate"
fi

_stamp="$(python -c 'import sys; print(sys.prefix)')/.gradscorecam-installed"
_want="$(cat "$_repo_root/pyproject.toml" | python -c 'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')"
if [ ! -f "$_stamp" ] || [ "$(cat "$_stamp")" != "$_want" ] || ! python -c 'import gradscorecam' 2>/dev/null; then
    echo "Installing the project and its dependencies (pip install -e '.[notebooks,explorer,test]') ..." >&2
    python -m pip install --quiet --disable-pip-version-check -e "$_repo_root[notebooks,explorer,test]"
    echo "$_want" >"$_stamp"
fi
unset _repo_root _stamp _want
