"""The lint step's wiring: run_tests.sh runs scripts/lint.sh (ruff and mypy) before pytest unless told not to,
a failing tool fails the step, and the pre-commit hook runs the ruff release the test extra asks for.

The tools themselves are stand-ins here (scripts that log their arguments): that the code is clean is what
the real step, run by ./run_tests.sh and CI, checks.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
LINTED = "lib scripts benchmarks tests .github/scripts"
#: The ruff release the tree is formatted with: the pre-commit hook's rev.
PRE_COMMIT_RUFF = next(
    r["rev"].lstrip("v")
    for r in yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())["repos"]
    if r["repo"].endswith("ruff-pre-commit")
)


def _stub(path: Path, body: str) -> None:
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def _tools(folder: Path, failing: str = "") -> tuple[dict[str, str], Path]:
    """A PATH whose ruff and mypy log their arguments to calls.log; the call ``failing`` exits 1."""
    (folder / "bin").mkdir(parents=True)
    log = folder / "calls.log"
    default = PRE_COMMIT_RUFF
    version = f'if [ "$1" = --version ]; then echo "ruff ${{RUFF_STUB_VERSION:-{default}}}"; exit 0; fi\n'
    for tool in ("ruff", "mypy"):
        answer = version if tool == "ruff" else ""
        _stub(folder / "bin" / tool, f'{answer}echo "{tool} $*" >>"{log}"\n[ "{tool} $*" != "{failing}" ]\n')
    return {**os.environ, "PATH": f"{folder / 'bin'}{os.pathsep}{os.environ['PATH']}"}, log


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_lint_step_runs_ruff_check_format_check_and_mypy_and_fails_if_any_fails(tmp_path):
    env, log = _tools(tmp_path / "clean")
    done = subprocess.run(["bash", str(ROOT / "scripts" / "lint.sh")], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    calls = [line.rstrip() for line in log.read_text().splitlines()]
    assert calls == [f"ruff check {LINTED}", f"ruff format --check {LINTED}", "mypy"]

    env, log = _tools(tmp_path / "unformatted", failing=f"ruff format --check {LINTED}")
    done = subprocess.run(["bash", str(ROOT / "scripts" / "lint.sh")], env=env, capture_output=True, text=True)
    assert done.returncode == 1
    assert log.read_text().splitlines()[-1].rstrip() == "mypy"  # every tool reports, not only the first failing one
    assert "./run_tests.sh --no-lint" in done.stderr

    # another ruff release may format differently: reported, not failed; its lint rules still fail the step
    env, log = _tools(tmp_path / "newer-ruff", failing=f"ruff format --check {LINTED}")
    env["RUFF_STUB_VERSION"] = "99.0.0"
    done = subprocess.run(["bash", str(ROOT / "scripts" / "lint.sh")], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "ruff 99.0.0 would reformat" in done.stderr and f"ruff {PRE_COMMIT_RUFF}" in done.stderr
    env, log = _tools(tmp_path / "newer-ruff-lint", failing=f"ruff check {LINTED}")
    env["RUFF_STUB_VERSION"] = "99.0.0"
    done = subprocess.run(["bash", str(ROOT / "scripts" / "lint.sh")], env=env, capture_output=True, text=True)
    assert done.returncode == 1


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize(
    ("args", "env_flag", "lints", "pytest_args"),
    [
        ([], None, True, ""),
        (["-k", "gradcam", "-x"], None, True, "-k gradcam -x"),
        (["-k", "gradcam", "--no-lint"], None, False, "-k gradcam"),
        (["--no-lint"], None, False, ""),
        (["-x"], "1", False, "-x"),
    ],
)
def test_run_tests_lints_first_unless_told_not_to(tmp_path, args, env_flag, lints, pytest_args):
    # run_tests.sh in a copy whose environment set-up, lint step and python only log what they were asked
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "run_tests.sh", tmp_path / "run_tests.sh")
    log = tmp_path / "calls.log"
    (tmp_path / "scripts" / "ensure_env.sh").write_text(f'echo "ensure_env" >>"{log}"\n')
    _stub(tmp_path / "scripts" / "lint.sh", f'echo "lint" >>"{log}"\n')
    (tmp_path / "bin").mkdir()
    _stub(tmp_path / "bin" / "python", f'echo "python $*" >>"{log}"\n')
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    env.pop("GRADSCORECAM_NO_LINT", None)
    if env_flag is not None:
        env["GRADSCORECAM_NO_LINT"] = env_flag
    done = subprocess.run(["bash", str(tmp_path / "run_tests.sh"), *args], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    expected = ["ensure_env", *(["lint"] if lints else []), f"python -m pytest {pytest_args}".rstrip()]
    assert log.read_text().splitlines() == expected


def test_pre_commit_runs_the_ruff_release_of_the_test_extra_with_the_projects_settings():
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["test"]
    (bound,) = [m.group(1) for r in extra if (m := re.fullmatch(r"ruff>=([0-9.]+)", r))]
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    (ruff,) = [repo for repo in config["repos"] if repo["repo"] == "https://github.com/astral-sh/ruff-pre-commit"]
    assert ruff["rev"] == f"v{bound}"  # the formatting the hook gives is the formatting CI checks
    for hook in ruff["hooks"]:  # no --config: the hooks read [tool.ruff] in pyproject.toml, as scripts/lint.sh
        assert not any(arg.startswith("--config") for arg in hook.get("args", [])), hook
