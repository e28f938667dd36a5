"""Plan a dispatched reproduce.yml run: check its inputs and emit the Table 1 shard matrix as JSON.

Runs on a bare GitHub-hosted runner (no torch, no project install): it loads the notebook-selection rule,
``gradscorecam.pipeline.discover_notebooks``, without the package's ``__init__`` (which imports torch), so
the workflow selects notebooks exactly as ``./run_all.sh --notebooks`` does.

    python .github/scripts/reproduce_plan.py --profile paper --notebooks "01 table1" --num-shards 4

prints, and appends to ``$GITHUB_OUTPUT`` when Actions sets it::

    num_shards=4               # the input as a whole number ("4.0" from a form becomes 4)
    shards=[0, 1, 2, 3]        # the matrix of the Table 1 job: range(num_shards)
    table1_sharded=true        # Table 1 is selected and num_shards > 1: run it as that matrix first

With ``num_shards`` 1, or a selection without Table 1, the shard jobs are skipped and the last job runs every
selected notebook itself. Bad input exits 1 with a message naming the input and the fix.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import types
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
TABLE1_PART = "table1"  # the name part run_all.sh --notebooks table1 selects; the shard jobs run exactly it
MAX_SHARDS = 256  # GitHub refuses a matrix of more jobs


def _pipeline() -> types.ModuleType:
    """``gradscorecam.pipeline`` imported with a bare package object standing in for the real package,
    so only the pipeline module (standard library at import time) is executed."""
    package = types.ModuleType("gradscorecam")
    package.__path__ = [str(REPO_ROOT / "lib" / "gradscorecam")]
    sys.modules.setdefault("gradscorecam", package)
    import gradscorecam.pipeline as pipeline

    return pipeline


def plan(profile: str, notebooks: str, num_shards: int) -> dict[str, str]:
    """The step outputs for these inputs; raises ValueError naming a bad input."""
    pipeline = _pipeline()
    if profile not in pipeline.PROFILES:
        raise ValueError(f"profile {profile!r} is not one of {', '.join(pipeline.PROFILES)}")
    if not 1 <= num_shards <= MAX_SHARDS:
        raise ValueError(f"num_shards must be between 1 and {MAX_SHARDS} (one Table 1 job per shard), got {num_shards}")
    try:
        chosen = pipeline.discover_notebooks(notebooks.split() or None)
    except pipeline.PipelineError as error:
        raise ValueError(f"notebooks {notebooks!r}: {error}") from None
    table1 = pipeline.discover_notebooks([TABLE1_PART])
    sharded = num_shards > 1 and any(nb in chosen for nb in table1)
    return {
        "num_shards": str(num_shards),
        "shards": json.dumps(list(range(num_shards))),
        "table1_sharded": json.dumps(sharded),
    }


def _whole_number(text: str) -> int:
    """``"4"`` or ``"4.0"`` (a dispatch form's number input) as 4; anything else is a ValueError."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value.is_integer():
        raise ValueError(f"num_shards must be a whole number, got {text!r}")
    return int(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", required=True)
    parser.add_argument("--notebooks", default="", help="space-separated selection; empty: every notebook")
    parser.add_argument("--num-shards", required=True, help="an integer >= 1")
    args = parser.parse_args(argv)
    try:
        outputs = plan(args.profile, args.notebooks, _whole_number(args.num_shards))
    except ValueError as error:
        print(f"::error::reproduce inputs: {error}", file=sys.stderr)
        return 1
    lines = "".join(f"{key}={value}\n" for key, value in outputs.items())
    if os.environ.get("GITHUB_OUTPUT"):
        with open(os.environ["GITHUB_OUTPUT"], "a", encoding="utf-8") as handle:
            handle.write(lines)
    print(lines, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
