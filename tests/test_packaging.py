"""environment.yml and pyproject.toml must name the same packages with the same lower bounds."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
# conda-forge names that differ from PyPI's
CONDA_TO_PYPI = {"pytorch": "torch"}
NOT_PACKAGES = {"python", "pip"}


def _project() -> dict:
    """pyproject.toml's [project] table. tomllib is in the standard library from Python 3.11; the project
    supports 3.10 (requires-python), where these checks are skipped rather than the module failing to import."""
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _split(requirement: str) -> tuple[str, str]:
    match = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*(.*?)\s*", requirement)
    assert match, requirement
    return match.group(1).lower(), match.group(2).replace(" ", "")


def _pyproject() -> dict[str, str]:
    """Every package pyproject.toml names, the extras' included (not an extra's reference to the project)."""
    project = _project()
    requirements = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        requirements += [r for r in extra if not r.startswith(project["name"] + "[")]
    found: dict[str, str] = {}
    for name, bound in map(_split, requirements):
        assert found.setdefault(name, bound) == bound, f"{name} has two lower bounds in pyproject.toml"
    return found


def test_extras_and_the_scripts_install_everything():
    optional = _project()["optional-dependencies"]
    assert {"notebooks", "explorer", "test"} <= set(optional)
    assert "gradscorecam[notebooks,explorer]" in optional["test"]  # the tests run notebooks and the explorer
    core = {_split(r)[0] for r in _project()["dependencies"]}
    assert not core & {"papermill", "nbformat", "jupyterlab", "ipykernel", "ipywidgets"}
    assert ".[notebooks,explorer,test]" in (ROOT / "scripts" / "ensure_env.sh").read_text()


def _environment() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    found: dict[str, str] = {}
    for entry in env["dependencies"]:
        items = entry["pip"] if isinstance(entry, dict) else [entry]
        for item in items:
            if item.startswith("-e"):
                continue
            name, bound = _split(item.replace("=", ">=", 1) if re.search(r"[^<>=!]=[^=]", item) else item)
            name = CONDA_TO_PYPI.get(name, name)
            if name not in NOT_PACKAGES:
                found[name] = bound
    return found


def test_environment_names_the_same_packages_as_pyproject():
    assert _environment() == _pyproject()


def test_only_lower_bounds():
    for name, bound in _pyproject().items():
        assert bound.startswith(">=") and "<" not in bound and "==" not in bound, (name, bound)


def test_environment_installs_the_project_and_pins_python_311():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "python=3.11" in env["dependencies"]
    pip_section = next(e["pip"] for e in env["dependencies"] if isinstance(e, dict))
    assert "-e ." in pip_section


def test_required_layout_exists():
    for path in ("notebooks", "lib/gradscorecam", "data", "figures", "tests", "environment.yml", "run_all.sh",
                 "run_tests.sh", ".ci/run", "README.md", "pyproject.toml"):  # fmt: skip
        assert (ROOT / path).exists(), path
