"""A non-editable ``pip install .`` works: the pipeline finds the notebooks of the checkout it runs in, and says
clearly when it runs outside one (the package itself holds no notebooks)."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with the project installed from a copy of the sources (not editable)."""
    base = tmp_path_factory.mktemp("install")
    source = base / "source"  # a copy, so that the build leaves nothing in the checkout
    shutil.copytree(ROOT / "lib", source / "lib", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    venv = base / "venv"
    # Without pip (and the old setuptools a fresh venv would bring): the test environment's pip installs into it,
    # and its packages (setuptools for the build) are reached through a .pth file, without that environment's
    # own .pth files, so an editable install of the project there cannot shadow the one made here.
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(venv)], check=True, timeout=300
    )
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    Path(purelib, "outer_environment.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", str(source)],
        check=True, timeout=600, env=_env(),
    )  # fmt: skip
    return python


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def _run(python: Path, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(python), *args], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=300)


def test_installed_package_is_a_copy_without_notebooks(installed: Path):
    done = _run(
        installed, ["-c", "import gradscorecam, pathlib; print(pathlib.Path(gradscorecam.__file__).parent)"], ROOT
    )
    package = Path(done.stdout.strip())
    assert done.returncode == 0, done.stderr
    assert "site-packages" in package.parts and not package.is_relative_to(ROOT)
    assert not list(package.parent.glob("notebooks"))


def test_pipeline_runs_from_the_checkout(installed: Path):
    done = _run(installed, ["-m", "gradscorecam.pipeline", "run", "--help"], ROOT)
    assert done.returncode == 0, done.stderr
    assert "--notebooks-dir" in done.stdout and "--profile" in done.stdout
    # from the checkout's root or a folder inside it, the checkout's notebooks are the ones found
    for cwd in (ROOT, ROOT / "tests"):
        found = _run(
            installed, ["-c", "from gradscorecam.pipeline import find_notebooks_dir; print(find_notebooks_dir())"], cwd
        )
        assert found.returncode == 0, found.stderr
        assert Path(found.stdout.strip()) == ROOT / "notebooks"


def test_pipeline_outside_a_checkout_says_so(installed: Path, tmp_path: Path):
    done = _run(installed, ["-m", "gradscorecam.pipeline", "run", "--profile", "smoke"], tmp_path)
    assert done.returncode == 1
    assert "no compendium checkout here" in done.stderr and "--notebooks-dir" in done.stderr
    assert (
        _run(installed, ["-m", "gradscorecam.pipeline", "run", "--help"], tmp_path).returncode == 0
    )  # help works anywhere


def test_installed_pipeline_runs_a_notebook_with_the_installed_library(installed: Path, tmp_path: Path):
    """The non-editable install runs notebooks end to end: a checkout-shaped folder without lib/, so the kernel
    can only import the installed package; its parameters are injected and its output written."""
    import nbformat

    notebooks = tmp_path / "checkout" / "notebooks"
    notebooks.mkdir(parents=True)
    parameters = nbformat.v4.new_code_cell('profile = "sample"\noutput_dir = "out"\nseed = 0')
    parameters.metadata["tags"] = ["parameters"]
    body = nbformat.v4.new_code_cell(
        "import pathlib, gradscorecam\n"
        "from gradscorecam import GradCAM, explainers\n"
        "pathlib.Path(output_dir).mkdir(parents=True, exist_ok=True)\n"
        "pathlib.Path(output_dir, 'where.txt').write_text(f'{profile} {seed} {gradscorecam.__file__}')\n"
    )
    notebook = nbformat.v4.new_notebook(cells=[parameters, body])
    notebook.metadata["language_info"] = {"name": "python"}  # as the compendium's notebooks have
    nbformat.write(notebook, notebooks / "01_where.ipynb")
    out = tmp_path / "results"
    done = _run(installed, ["-m", "gradscorecam.pipeline", "run", "--profile", "smoke", "--out", str(out),
                            "--figures", str(tmp_path / "figures")], notebooks.parent)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    profile, seed, module = (out / "where.txt").read_text().split(" ", 2)
    assert (profile, seed) == ("smoke", "0")  # the smoke profile's parameters reached the notebook
    assert "site-packages" in Path(module).parts and not Path(module).is_relative_to(ROOT)
