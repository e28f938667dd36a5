"""The explorer notebook as committed: no outputs, the pipeline's parameters, the explorer in its first cell.

That it runs under papermill with the smoke profile's parameters, without waiting for input, and what its
executed copy shows, is checked on the copy the pipeline's smoke test makes
(``tests/test_pipeline.py::check_explorer_notebook``): the suite executes the notebook once, not twice.
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
    assert all(
        not cell.get("outputs") and not cell.get("execution_count")
        for cell in notebook.cells
        if cell.cell_type == "code"
    )
    declared = set(papermill.inspect_notebook(str(NOTEBOOK)))
    assert {"profile", "model_file", "weights", "device", "image_source", "max_channels"} <= declared
    code = [cell.source for cell in notebook.cells if cell.cell_type == "code"]
    assert "parameters" in notebook.cells[1].metadata.get("tags", [])
    assert "Explorer.default(" in code[1] and code[1].rstrip().endswith(
        "explorer"
    )  # the first cell after the parameters
