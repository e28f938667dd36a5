"""The library's version, and the version a results row records: the package version plus, when the code runs
from a git checkout, the commit and whether the checkout has uncommitted changes.

>>> library_version()          # installed from a release: the package version
'0.1.0'
>>> library_version()          # run from a development checkout at commit 1a2b3c4d5e6f with local edits
'0.1.0+g1a2b3c4d5e6f.dirty'

The suffix follows PEP 440's local version label (``+g<commit>[.dirty]``). It is provenance only: the runner
records it with every row (like ``torch_version``) but does not compare it when a results file is resumed,
since every commit would otherwise refuse to resume; what must match on resume is the configuration,
including each explainer's effective options (:mod:`gradscorecam.results`).
"""

from __future__ import annotations

import subprocess
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

#: The version when the package is imported from a checkout without being installed (pyproject.toml's).
CHECKOUT_VERSION = "0.1.0"


def package_version() -> str:
    """The installed distribution's version (``pip install``), else :data:`CHECKOUT_VERSION`."""
    try:
        return version("gradscorecam")
    except PackageNotFoundError:  # imported from a checkout without installing
        return CHECKOUT_VERSION


@lru_cache(maxsize=1)
def library_version() -> str:
    """``package_version()``, plus ``+g<commit>`` (and ``.dirty`` for uncommitted changes to tracked files)
    when this module lies in a git checkout of the project; computed once per process."""
    base = package_version().split("+")[0]
    commit = _git_commit(Path(__file__).resolve().parents[2])
    return f"{base}+{commit}" if commit else base


def _git_commit(root: Path) -> str | None:
    """``g<12 hex digits>[.dirty]`` if ``root`` is the top of a git work tree (not merely inside one, e.g. a
    virtual environment in some other repository), else None; also None when git is not installed."""
    if not (root / "pyproject.toml").is_file() or not (root / ".git").exists():
        return None
    try:

        def git(*args: str) -> str:
            done = subprocess.run(
                ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10, check=True
            )
            return done.stdout.strip()

        commit = git("rev-parse", "--short=12", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return f"g{commit}" + (".dirty" if dirty else "")
