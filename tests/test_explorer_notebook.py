"""The explorer notebook runs under papermill with the smoke profile's parameters, without waiting for input.

It loads its models through ``gradscorecam.models`` (random torchvision weights in the smoke profile) and its
images through ``gradscorecam.datasets``; the test is skipped where those are not installed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "90_explorer.ipynb"


def test_notebook_is_committed_without_outputs_and_declares_its_parameters():
    nbformat = pytest.importorskip("nbformat")
    papermill = pytest.importorskip("papermill")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not cell.get("outputs") and not cell.get("execution_count") for cell in notebook.cells if cell.cell_type == "code")
    declared = set(papermill.inspect_notebook(str(NOTEBOOK)))
    assert {"profile", "model_file", "weights", "device", "image_source", "max_channels"} <= declared
    code = [cell.source for cell in notebook.cells if cell.cell_type == "code"]
    assert "parameters" in notebook.cells[1].metadata.get("tags", [])
    assert "Explorer.default(" in code[1] and code[1].rstrip().endswith("explorer")  # the first cell after the parameters


@pytest.mark.slow
def test_notebook_runs_under_papermill_in_the_smoke_profile(tmp_path, monkeypatch):
    pytest.importorskip("gradscorecam.models")
    pytest.importorskip("gradscorecam.datasets")
    papermill = pytest.importorskip("papermill")
    nbformat = pytest.importorskip("nbformat")
    monkeypatch.setenv("PYTHONPATH", str(ROOT / "lib"))  # the kernel imports this checkout's library
    executed = tmp_path / "90_explorer.ipynb"
    papermill.execute_notebook(
        str(NOTEBOOK), str(executed), kernel_name="python3", cwd=str(NOTEBOOK.parent), progress_bar=False,
        parameters={"profile": "smoke", "weights": None, "device": "cpu", "image_source": "builtin", "max_channels": 16},
        execution_timeout=600,
    )  # fmt: skip
    notebook = nbformat.read(executed, as_version=4)
    text = "".join(
        output.get("text", "") + str(output.get("data", {}).get("text/markdown", ""))
        for cell in notebook.cells if cell.cell_type == "code" for output in cell.get("outputs", [])
    )  # fmt: skip
    assert "random weights — pipeline check only" in text
    for method in ("Grad-CAM", "Grad-CAM++", "Grad++ScoreCAM"):
        assert f"  {method} " in text and " s\n" in text
    outputs = [o for cell in notebook.cells for o in cell.get("outputs", [])]
    assert any("image/png" in o.get("data", {}) for o in outputs)
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs)
