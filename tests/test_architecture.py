"""Dependencies point one way (docs/architecture.md): importing a layer pulls in nothing from the layers above it,
and ``import gradscorecam`` (or one explainer) loads none of the evaluation, figure or notebook stack.

Each import runs in its own fresh process: one interpreter that has imported nothing of gradscorecam (only
torch, torchvision and numpy, which every layer shares and which take most of the start-up time) forks a
child per import, and the child reports ``sys.modules``. What one import loaded cannot hide what another needs.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lib" / "gradscorecam"

#: The layers, bottom first; a module may import its own layer and those below, never one above.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundations", ("errors", "torchutils", "version")),
    ("explainers", ("explainers",)),
    ("metrics and sources", ("metrics", "datasets", "models")),
    ("results and runner", ("results", "runner")),
    (
        "analyses and figures",
        ("summary", "verdict", "evidence", "experiments", "ablation", "comparison", "plotting", "sanity"),
    ),
    ("applications", ("pipeline", "explorer", "report")),
]
LAYER_OF = {module: index for index, (_, modules) in enumerate(LAYERS) for module in modules}
PRESENT = [m for m in LAYER_OF if (PACKAGE / f"{m}.py").is_file() or (PACKAGE / m / "__init__.py").is_file()]
# the notebook and evaluation stack a user of one explainer should not pay for
HEAVY = ("pandas", "scipy", "matplotlib", "seaborn", "papermill", "nbformat", "ipywidgets", "IPython", "skimage")
STATEMENTS = {
    **{module: f"import gradscorecam.{module}" for module in PRESENT},
    "bare": "import gradscorecam",
    "one explainer": "from gradscorecam import GradPlusPlusScoreCAM, GradCAM, metrics",
}

_FORKER = """
import json, os, sys
import numpy, torch, torchvision  # shared by every layer; none of gradscorecam is imported here

loaded = {}
for key, statement in json.loads(sys.argv[1]).items():
    read, write = os.pipe()
    if os.fork() == 0:
        os.close(read)
        try:
            exec(statement, {})
            report = sorted(sys.modules)
        except BaseException as error:
            report = {"error": repr(error)}
        with os.fdopen(write, "w") as out:
            out.write(json.dumps(report))
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as answer:
        loaded[key] = json.loads(answer.read())
    os.wait()
print(json.dumps(loaded))
"""


@pytest.fixture(scope="module")
def loaded() -> dict[str, set[str]]:
    """For each statement of :data:`STATEMENTS`, the modules loaded after it ran in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "lib")}
    done = subprocess.run([sys.executable, "-c", _FORKER, json.dumps(STATEMENTS)], env=env, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr
    answers = json.loads(done.stdout.strip().splitlines()[-1])
    errors = {key: value["error"] for key, value in answers.items() if isinstance(value, dict)}
    assert not errors, errors
    return {key: set(value) for key, value in answers.items()}


def _library_modules(modules: set[str]) -> set[str]:
    return {name.split(".")[1] for name in modules if name.startswith("gradscorecam.")}


def test_every_module_has_a_layer():
    present = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    present |= {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    unplaced = sorted(present - set(LAYER_OF))
    assert not unplaced, f"give {unplaced} a layer here and in docs/architecture.md"


@pytest.mark.parametrize("module", PRESENT)
def test_a_layer_imports_nothing_above_it(module: str, loaded: dict[str, set[str]]):
    above = {m for m in _library_modules(loaded[module]) if LAYER_OF.get(m, -1) > LAYER_OF[module]}
    assert not above, (
        f"gradscorecam.{module} (layer {LAYERS[LAYER_OF[module]][0]!r}) imports layers above it: {sorted(above)}"
    )


def test_one_explainer_loads_no_evaluation_or_notebook_stack(loaded: dict[str, set[str]]):
    assert _library_modules(loaded["bare"]) <= {"errors"}  # everything else is loaded on first use
    assert not [m for m in HEAVY if m in loaded["one explainer"]]
    assert not _library_modules(loaded["one explainer"]) - {"errors", "torchutils", "explainers", "metrics"}


def test_lazy_names_resolve_to_their_modules():
    import gradscorecam
    from gradscorecam import results, runner, summary
    from gradscorecam.explainers import GradCAM

    assert gradscorecam.GradCAM is GradCAM and gradscorecam.evaluate is runner.evaluate
    assert gradscorecam.read_results is results.read_results and gradscorecam.summarize is summary.summarize
    assert gradscorecam.__version__ == gradscorecam.library_version().split("+")[0]
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        gradscorecam.nope  # noqa: B018


def test_no_private_names_imported_between_modules():
    """A name with a leading underscore is its module's own; what two modules of the library share is public.
    (The applications, the explorer and the pipeline, are checked as a whole by the layers, not inside.)"""
    found = []
    for path in PACKAGE.rglob("*.py"):
        if path.relative_to(PACKAGE).parts[0] in ("explorer", "pipeline.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("gradscorecam")):
                found += [
                    f"{path.relative_to(PACKAGE)}: {alias.name}" for alias in node.names if alias.name.startswith("_")
                ]
    assert not found, found
