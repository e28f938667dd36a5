"""environment.yml and pyproject.toml must name the same packages with the same lower bounds."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
# conda-forge names that differ from PyPI's
CONDA_TO_PYPI = {"pytorch": "torch"}
NOT_PACKAGES = {"python", "pip"}


def _split(requirement: str) -> tuple[str, str]:
    match = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*(.*?)\s*", requirement)
    assert match, requirement
    return match.group(1).lower(), match.group(2).replace(" ", "")


def _pyproject() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + project["optional-dependencies"]["test"]
    return dict(_split(r) for r in requirements)


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
