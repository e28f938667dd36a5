"""run_all.sh's engine: profiles, notebook discovery, failures, and the whole smoke pipeline through papermill."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from PIL import Image

from gradscorecam import pipeline

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
EXPECTED_GRIDS = {
    "figure2_resnet50.png": "grid 2x7",
    "figure3_vgg16.png": "grid 2x7",
    "figure4_alexnet.png": "grid 2x7",
    "figure5_multi_object_alexnet.png": "grid 1x7",
}


def test_notebooks_are_numbered_and_committed_without_outputs():
    names = [nb.name for nb in NOTEBOOKS]
    assert names[:6] == [
        "01_figure2_resnet50.ipynb", "02_figure3_vgg16.ipynb", "03_figure4_alexnet.ipynb",
        "04_figure5_multi_object.ipynb", "05_table1_faithfulness.ipynb", "06_ablation.ipynb",
    ]  # fmt: skip
    assert names[-1].endswith("_explorer.ipynb")
    for notebook in NOTEBOOKS:
        cells = nbformat.read(notebook, as_version=4).cells
        assert cells[0].cell_type == "markdown" and "How long" in cells[0].source or "explorer" in notebook.name
        for cell in cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, notebook.name


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_every_notebook_declares_the_profile_parameters(notebook):
    declared = pipeline.declared_parameters(notebook)
    assert {"profile", "model_file", "weights", "device", "image_source"} <= declared
    if "explorer" not in notebook.name:
        assert {"seed", "batch_size", "max_channels", "figures_dir", "output_dir"} <= declared


def test_declared_parameters_reads_names_not_comments(tmp_path):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("a = 1  # b = 2; c = 3\nn: int = 5\nflag == 1\n  indented = 0\n")
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, nbformat.v4.new_code_cell("later = 1")]
    path = tmp_path / "p.ipynb"
    nbformat.write(nb, path)
    assert pipeline.declared_parameters(path) == {"a", "n"}


def test_profiles(tmp_path, monkeypatch):
    smoke = pipeline.profile_parameters("smoke", {}, tmp_path / "out", tmp_path / "fig")
    assert smoke["weights"] is None and smoke["n_images"] == 2 and smoke["max_channels"] == 16
    assert smoke["output_dir"] == str((tmp_path / "out").resolve())
    sample = pipeline.profile_parameters("sample", {"device": "cpu", "seed": None}, tmp_path, tmp_path)
    assert sample["weights"] == "DEFAULT" and sample["device"] == "cpu" and "seed" not in sample
    monkeypatch.delenv("IMAGENET_VAL", raising=False)
    with pytest.raises(pipeline.PipelineError, match="--imagenet-val /path/to/val or set IMAGENET_VAL"):
        pipeline.profile_parameters("paper", {}, tmp_path, tmp_path)
    monkeypatch.setenv("IMAGENET_VAL", str(tmp_path))
    assert pipeline.profile_parameters("paper", {}, tmp_path, tmp_path)["image_source"] == str(tmp_path.resolve())
    with pytest.raises(pipeline.PipelineError, match="--model-file .*nope.py: no such file"):
        pipeline.profile_parameters("smoke", {"model_file": str(tmp_path / "nope.py")}, tmp_path, tmp_path)
    (tmp_path / "m.py").write_text("")
    monkeypatch.setenv("HOME", str(tmp_path))  # a quoted "~/m.py" reaches us unexpanded
    assert pipeline.profile_parameters("smoke", {"model_file": "~/m.py"}, tmp_path, tmp_path)["model_file"] == str(
        (tmp_path / "m.py").resolve()
    )
    with pytest.raises(pipeline.PipelineError, match="unknown profile 'fast'"):
        pipeline.profile_parameters("fast", {}, tmp_path, tmp_path)


def test_a_run_does_not_take_the_web_apps_options_from_the_environment(tmp_path, monkeypatch, capsys):
    """Notebook 90 reads GRADSCORECAM_MODEL_FILE ... as defaults; a run (papermill injects no model_file without
    --model-file) must not explain the model of a JupyterHub spawner's environment instead of its own."""
    seen: list[dict[str, str]] = []

    def fake_run(notebooks, params, out_dir, **kwargs):  # what the notebooks' kernels would inherit
        seen.append(dict(os.environ))
        return []

    monkeypatch.setattr(pipeline, "run_notebooks", fake_run)
    monkeypatch.setattr(pipeline, "ensure_kernel", lambda: "gradscorecam")
    stale = {"GRADSCORECAM_MODEL_FILE": "/srv/other_model.py", "GRADSCORECAM_WEIGHTS": "random",
             "GRADSCORECAM_IMAGES": "/srv/photos", "GRADSCORECAM_DEVICE": "cuda"}  # fmt: skip
    for key, value in stale.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))  # main() prepends lib/: restored after
    assert set(stale) == set(pipeline.APP_ENVIRONMENT)
    out = tmp_path / "out"
    assert pipeline.main(["run", "--profile", "smoke", "--notebooks", "90", "--out", str(out), "--figures",
                          str(tmp_path / "fig")]) == 0  # fmt: skip
    assert len(seen) == 1 and not set(stale) & set(seen[0])
    assert "Ignoring GRADSCORECAM_MODEL_FILE, GRADSCORECAM_IMAGES, GRADSCORECAM_DEVICE, GRADSCORECAM_WEIGHTS" in (
        capsys.readouterr().out
    )
    assert pipeline.drop_app_environment({"GRADSCORECAM_DEVICE": "cpu", "HOME": "/h"}) == ["GRADSCORECAM_DEVICE"]


def test_discover_notebooks_selection():
    assert [p.name for p in pipeline.discover_notebooks(["05"])] == ["05_table1_faithfulness.ipynb"]
    assert [p.name for p in pipeline.discover_notebooks(["figure2", "table1"])] == [
        "01_figure2_resnet50.ipynb", "05_table1_faithfulness.ipynb"]  # fmt: skip
    with pytest.raises(pipeline.PipelineError, match="no notebook matches 'figure9'; available: 01_figure2"):
        pipeline.discover_notebooks(["figure9"])


def test_a_failing_notebook_is_named_with_its_error_and_executed_copy(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("raise ValueError('broken on purpose')")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    folder = tmp_path / "notebooks"
    folder.mkdir()
    nbformat.write(nb, folder / "01_broken.ipynb")
    params = pipeline.profile_parameters("smoke", {}, tmp_path / "out", tmp_path / "fig")
    with pytest.raises(pipeline.PipelineError) as error:
        pipeline.run_notebooks(
            [folder / "01_broken.ipynb"], params, tmp_path / "out", kernel_name=pipeline.ensure_kernel()
        )
    message = str(error.value)
    assert "01_broken.ipynb failed in cell 2: ValueError: broken on purpose" in message
    assert str(tmp_path / "out" / "executed" / "01_broken.ipynb") in message
    assert (tmp_path / "out" / "executed" / "01_broken.ipynb").exists()


def test_a_dead_kernel_is_reported_with_the_notebook(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)")]
    folder = tmp_path / "notebooks"
    folder.mkdir()
    nbformat.write(nb, folder / "01_dies.ipynb")
    params = pipeline.profile_parameters("smoke", {}, tmp_path / "out", tmp_path / "fig")
    with pytest.raises(pipeline.PipelineError, match=r"01_dies.ipynb did not finish: DeadKernelError"):
        pipeline.run_notebooks(
            [folder / "01_dies.ipynb"], params, tmp_path / "out", kernel_name=pipeline.ensure_kernel()
        )


@pytest.mark.slow
def test_smoke_profile_runs_every_notebook(tmp_path):
    """The whole pipeline, as ./run_all.sh --profile smoke runs it (random weights, 2 images, 16 channels)."""
    out, figures = tmp_path / "results", tmp_path / "figures"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "lib")}
    command = [sys.executable, "-m", "gradscorecam.pipeline", "run", "--profile", "smoke", "--out", str(out),
               "--figures", str(figures)]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Made with RANDOM WEIGHTS" in done.stdout

    for notebook in NOTEBOOKS:
        assert (out / "executed" / notebook.name).exists()
    check_explorer_notebook(out / "executed" / "90_explorer.ipynb")
    check_sanity_notebook(out, figures)
    check_says_what_ran(out / "executed")
    for name, grid in EXPECTED_GRIDS.items():
        png = Image.open(figures / name)
        assert png.text["Description"].startswith(grid), name
        assert (figures / name).with_suffix(".pdf").stat().st_size > 0
    table = pd.read_csv(figures / "table1_vgg16.csv", index_col=0)
    assert list(table.index) == ["CAM", "Grad-CAM", "Grad-CAM++", "Score-CAM", "SmoothGrad-CAM++", "Grad++ScoreCAM"]
    defined = table.drop(index="CAM")
    assert defined["Average Drop %"].between(0, 100).all() and defined["Average Increase %"].between(0, 100).all()
    assert (defined["N"] == 2).all()
    assert table.loc["CAM", "note"].startswith("not defined")  # VGG16 has no global-average-pooling head
    assert "RANDOM WEIGHTS" in (figures / "table1_vgg16.md").read_text()
    assert (figures / "table1_vgg16.tex").exists() and (figures / "table1_vgg16_chart.png").exists()
    results = pd.read_csv(out / "table1_vgg16.csv")
    assert len(results) == 12 and results["weights"].str.startswith("random").all()
    # every row records the options its explainer ran with, defaults included: the smoke budget and the reading
    ours = [json.loads(o) for o in results.loc[results["method"] == "Grad++ScoreCAM", "explainer_options"]]
    assert [(o["max_channels"], o["mask_source"], o["perturb"], o["baseline"], o["combine"]) for o in ours] == [
        (16, "activation", "input", "zeros", "score")] * 2  # fmt: skip
    assert (
        json.loads((out / "table1_vgg16.csv.config.json").read_text())["explainer_options"]["Grad++ScoreCAM"] == ours[0]
    )

    ablation = pd.read_csv(figures / "ablation_alexnet.csv")
    assert set(ablation["layer"]) == {"features.11", "features.9"}  # the usual layer and an inner one
    ours = ablation[ablation["method"] == "Grad++ScoreCAM"]
    assert len(ours) == 2 * 16 and (ours["max_channels"].astype(str) == "16").all()  # 16 readings, smoke budget
    assert set(ablation["method"]) == {"Grad++ScoreCAM", "Grad-CAM++", "Score-CAM"}
    assert ablation["average_drop"].between(0, 100).all() and (ablation["n_images"] == 2).all()
    assert Image.open(figures / "ablation_alexnet_pareto.png").size[0] > 0
    check_report(out, figures)


def test_report_does_not_call_a_model_files_weights_random(tmp_path):
    # the smoke profile's weights=None applies to torchvision networks; a model file brings its own weights
    params = {"profile": "smoke", "weights": None, "model_file": "/x/model.py", "output_dir": str(tmp_path)}
    assert "RANDOM WEIGHTS" not in pipeline.report([], params)
    assert "RANDOM WEIGHTS" in pipeline.report([], {**params, "model_file": None})


def check_report(out: Path, figures: Path) -> None:
    """The smoke run's report: every notebook rendered and ok, every link resolves, the random weights named,
    Table 1 and Figures 2-5 taken from this run's files."""
    from test_report import assert_links_resolve

    index = out / "report" / "index.html"
    links = assert_links_resolve(index)
    for notebook in NOTEBOOKS:
        assert f"notebooks/{notebook.stem}.html" in links
        assert_links_resolve(out / "report" / "notebooks" / f"{notebook.stem}.html")
    for name in EXPECTED_GRIDS:
        assert f"files/{name}" in links
    text = index.read_text(encoding="utf-8")
    assert "Made with RANDOM WEIGHTS" in text and "weights random (weights=None, torch seed 0)" in text
    assert "failed" not in re.sub(r"<style>.*?</style>", "", text, flags=re.DOTALL) and "not run" not in text
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["status"] == "ok" and [n["status"] for n in manifest["notebooks"]] == ["ok"] * len(NOTEBOOKS)
    table = pd.read_csv(figures / "table1_vgg16.csv", index_col=0)
    assert f"<td>{table.loc['Grad++ScoreCAM', 'Average Drop % (paper, VGG16)']}</td>" in text  # the paper's 32.6


def check_sanity_notebook(out: Path, figures: Path) -> None:
    """Notebook 07 as the smoke pipeline ran it (resnet18, random weights, 2 images, 4 coarse steps)."""
    table = pd.read_csv(figures / "sanity_resnet18_pass.csv", index_col=0)
    assert list(table.index) == ["CAM", "Grad-CAM", "Grad-CAM++", "Score-CAM", "SmoothGrad-CAM++", "Grad++ScoreCAM"]
    assert "RANDOM WEIGHTS" in (figures / "sanity_resnet18_pass.md").read_text()
    rows = pd.read_csv(out / "sanity_resnet18.csv")
    trained = rows[(rows["mode"] != "reference") & (rows["step"] == 0)]  # reference rows compare two images
    assert len(trained) and (trained["spearman"] == 1.0).all()
    assert sorted(rows[rows["mode"] == "cascading"]["step"].unique()) == [0, 1, 2, 3, 4]  # smoke: 4 steps
    for name in ("sanity_resnet18_cascade.png", "sanity_resnet18_curves.png"):
        assert Image.open(figures / name).size[0] > 0


def check_says_what_ran(executed: Path) -> None:
    """No executed notebook claims every channel was scored when a budget ran (the smoke profile scores 16), or
    calls its images ImageNet's (the smoke profile explains the built-in photographs)."""
    # ("your ImageNet validation folder", advice to the reader, is not a claim about these images)
    wrong = re.compile(r"all channels|every (?:non-constant )?channel|images? (?:from|of) ImageNet|ImageNet "
                       r"(?:images|photographs)", re.IGNORECASE)  # fmt: skip
    for path in sorted(executed.glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        for cell in notebook.cells:
            for output in cell.get("outputs", []):
                text = output.get("text", "") + "".join(
                    v for k, v in output.get("data", {}).items() if k.startswith("text/") and isinstance(v, str)
                )
                found = wrong.search(text)
                assert not found, (
                    f"{path.name} says {found.group(0)!r}: {text[max(0, found.start() - 200) : found.end() + 200]}"
                )


def check_explorer_notebook(executed: Path) -> None:
    """Notebook 90 as the smoke pipeline executed it (its only run in the suite): built without waiting for
    input, labelled as random weights, the three methods shown with their seconds, a picture and the widget."""
    notebook = nbformat.read(executed, as_version=4)
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.get("outputs", [])]
    text = "".join(output.get("text", "") + str(output.get("data", {}).get("text/markdown", "")) for output in outputs)
    assert "random weights — pipeline check only" in text
    lines = text.splitlines()
    for method in ("Grad-CAM", "Grad-CAM++"):
        assert any(re.fullmatch(rf"  {re.escape(method)} +\d+\.\d\d s", line) for line in lines), method
    # what ran, or would run when estimated too slow for this machine: the smoke profile's 16 channels, not "all"
    ours = r"  Grad\+\+ScoreCAM +\d+\.\d\d s · (\d+) of \d+ channels scored \(budget: at most 16 channels\)"
    waits = r"message: Grad\+\+ScoreCAM would take about \d+ s here: 16 of \d+ channels to score \(budget: at most 16 channels\).*"
    ran = any((match := re.fullmatch(ours, line)) and int(match.group(1)) <= 16 for line in lines)
    assert ran or any(re.fullmatch(waits, line) for line in lines), text
    assert any("image/png" in output.get("data", {}) for output in outputs)
    assert any("application/vnd.jupyter.widget-view+json" in output.get("data", {}) for output in outputs)


@pytest.mark.parametrize(("index", "shards"), [(0, None), (None, 8), (8, 8), (-1, 8)])
def test_shard_options_are_given_together_and_in_range(tmp_path, index, shards):
    overrides = {"shard_index": index, "num_shards": shards}
    with pytest.raises(pipeline.PipelineError, match="give both, with 0 <= index < shards"):
        pipeline.profile_parameters("smoke", overrides, tmp_path / "results", tmp_path / "figures")
    assert (
        pipeline.profile_parameters("smoke", {"shard_index": 7, "num_shards": 8}, tmp_path, tmp_path)["shard_index"]
        == 7
    )


def test_papermill_parses_every_parameters_cell_as_the_pipeline_does():
    # papermill warns "Unable to parse line ..." and "Passed unknown parameter" for a parameters line it cannot
    # read (e.g. a second "=" in its comment); the values are still injected, but every run's log says so
    papermill = pytest.importorskip("papermill")
    for notebook in pipeline.discover_notebooks():
        assert set(papermill.inspect_notebook(str(notebook))) == pipeline.declared_parameters(notebook), notebook.name
