"""The GitHub workflows, their helpers, CITATION.cff and the pre-commit hooks, checked offline so that a
broken file fails the suite here, not on a runner.

Schemas: ``check-jsonschema --builtin-schema vendor.github-workflows`` (and ``vendor.github-actions``,
``vendor.citation-file-format``), which ship inside the PyPI package (test extra); the tests that need it
are skipped, saying so, where it is not installed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gradscorecam import pipeline

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
ACTIONS = sorted((ROOT / ".github" / "actions").glob("*/action.yml"))
REPRODUCE = ROOT / ".github" / "workflows" / "reproduce.yml"
PLAN = ROOT / ".github" / "scripts" / "reproduce_plan.py"

needs_check_jsonschema = pytest.mark.skipif(
    importlib.util.find_spec("check_jsonschema") is None,
    reason="check-jsonschema is not installed; it is in the test extra: pip install -e '.[test]'",
)


def _check(schema: str, *paths: Path) -> tuple[int, str]:
    """``check-jsonschema --builtin-schema vendor.<schema> paths`` (the schema ships with the package: offline),
    run in this process, since importing it costs seconds: its exit status and its output."""
    from check_jsonschema import main

    output = io.StringIO()
    with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
        try:
            main(["--builtin-schema", f"vendor.{schema}", *map(str, paths)])
            status = 0
        except SystemExit as stopped:
            status = stopped.code or 0
    return int(status), output.getvalue()


# ------------------------------------------------------------------------------------------ schemas
def test_the_two_workflows_exist():
    assert {p.name for p in WORKFLOWS} >= {"tests.yml", "reproduce.yml"}


@needs_check_jsonschema
def test_every_workflow_and_local_action_passes_githubs_schema():
    status, output = _check("github-workflows", *WORKFLOWS)
    assert status == 0, output
    status, output = _check("github-actions", *ACTIONS)
    assert status == 0, output


@needs_check_jsonschema
@pytest.mark.parametrize(
    ("workflow", "good", "bad", "complaint"),
    [
        ("tests.yml", "    runs-on: ubuntu-latest\n", "", "'runs-on' is a required property"),
        (
            "reproduce.yml",
            "    needs: plan\n",
            "    need: plan\n",
            "Additional properties are not allowed ('need' was unexpected)",
        ),
    ],
)
def test_a_broken_workflow_fails_the_schema_check(tmp_path, workflow, good, bad, complaint):
    text = (ROOT / ".github" / "workflows" / workflow).read_text()
    assert text.count(good) == 1, f"{workflow} changed: update this test's edit"
    broken = tmp_path / workflow
    broken.write_text(text.replace(good, bad))
    status, output = _check("github-workflows", broken)
    assert status == 1
    assert complaint in output


# ------------------------------------------------------------------------ run_all.sh options they use
def _run_scripts() -> list[str]:
    """The ``run:`` scripts of every workflow job and local action step."""
    scripts = []
    for path in WORKFLOWS:
        for job in yaml.safe_load(path.read_text())["jobs"].values():
            scripts += [step["run"] for step in job.get("steps", []) if "run" in step]
    for path in ACTIONS:
        scripts += [step["run"] for step in yaml.safe_load(path.read_text())["runs"]["steps"] if "run" in step]
    return scripts


def _help_options(command: str, capsys: pytest.CaptureFixture[str]) -> set[str]:
    """The options ``./run_all.sh {command} --help`` lists (``python -m gradscorecam.pipeline {command} --help``,
    called in this process: the same parser and text, without importing torch again)."""
    with pytest.raises(SystemExit) as stopped:
        pipeline.main([command, "--help"])
    assert stopped.value.code == 0
    return set(re.findall(r"--[a-z][a-z0-9-]*", capsys.readouterr().out))


def test_every_run_all_option_the_workflows_use_exists(capsys):
    used: dict[str, set[str]] = {"run": set(), "merge": set()}
    for script in _run_scripts():
        if "./run_all.sh" in script:
            command = "merge" if "./run_all.sh merge" in script else "run"
            used[command] |= set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", script))
    # what the workflows must use (so that this test cannot pass on nothing)
    assert used["run"] >= {"--profile", "--device", "--notebooks", "--shard-index", "--num-shards"}
    assert used["merge"] == {"--output"}
    for command, options in used.items():
        missing = options - _help_options(command, capsys)
        assert not missing, f"the workflows use ./run_all.sh {command} {sorted(missing)}, which --help does not list"


# ------------------------------------------------------------------- the plan job's script
def _plan(tmp_path: Path, profile: str, notebooks: str, num_shards: str) -> tuple[int, str, str]:
    """Run the plan as the GitHub-hosted job does, but without site-packages (-S): it must not need torch."""
    outputs = tmp_path / "github_output"
    outputs.write_text("")
    command = [sys.executable, "-I", "-S", str(PLAN), "--profile", profile, "--notebooks", notebooks,
               "--num-shards", num_shards]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=60,
                            env={"GITHUB_OUTPUT": str(outputs), "PATH": os.environ["PATH"]})  # fmt: skip
    return result.returncode, outputs.read_text(), result.stderr


@pytest.mark.parametrize(
    ("profile", "notebooks", "num_shards", "shards", "sharded"),
    [
        ("paper", "", "4", [0, 1, 2, 3], True),  # every notebook, Table 1 among them
        ("paper", "table1 06", "2", [0, 1], True),
        ("sample", "05", "3.0", [0, 1, 2], True),  # a number input may arrive as "3.0"
        ("smoke", "01 02", "3", [0, 1, 2], False),  # no Table 1 in the selection
        ("paper", "", "1", [0], False),  # one shard: the notebooks job runs Table 1 itself
    ],
)
def test_plan_emits_the_shard_matrix(tmp_path, profile, notebooks, num_shards, shards, sharded):
    returncode, outputs, stderr = _plan(tmp_path, profile, notebooks, num_shards)
    assert returncode == 0, stderr
    assert outputs == f"num_shards={len(shards)}\nshards={json.dumps(shards)}\ntable1_sharded={json.dumps(sharded)}\n"


@pytest.mark.parametrize(
    ("profile", "notebooks", "num_shards", "message"),
    [
        ("fast", "", "2", "profile 'fast' is not one of smoke, sample, paper"),
        ("paper", "zz", "2", "notebooks 'zz': no notebook matches 'zz'; available: 01_figure2_resnet50.ipynb"),
        ("paper", "", "0", "num_shards must be between 1 and 256"),
        ("paper", "", "257", "num_shards must be between 1 and 256"),
        ("paper", "", "2.5", "num_shards must be a whole number, got '2.5'"),
    ],
)
def test_plan_refuses_bad_inputs_naming_them(tmp_path, profile, notebooks, num_shards, message):
    returncode, outputs, stderr = _plan(tmp_path, profile, notebooks, num_shards)
    assert returncode == 1
    assert outputs == ""
    assert stderr.startswith("::error::reproduce inputs: ") and message in stderr


# ------------------------------------------------------- the notebooks job's shell steps, run here
def _step(name_prefix: str) -> str:
    steps = yaml.safe_load(REPRODUCE.read_text())["jobs"]["notebooks"]["steps"]
    (script,) = [s["run"] for s in steps if s.get("name", "").startswith(name_prefix)]
    assert "${{" not in script, "the step must take its inputs from the environment, so it runs here as there"
    return script


def _run_step(tmp_path: Path, script: str, **env: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run a step's script as GitHub does (bash -eo pipefail) with a ./run_all.sh that records its arguments."""
    stub = tmp_path / "run_all.sh"
    stub.write_text('#!/usr/bin/env bash\necho "$*" >> calls.txt\n')
    stub.chmod(0o755)
    (tmp_path / "step.sh").write_text(script)
    result = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "step.sh"], cwd=tmp_path, capture_output=True,
        text=True, timeout=60, env={"PATH": os.environ["PATH"], **env},
    )  # fmt: skip
    calls = (tmp_path / "calls.txt").read_text().splitlines() if (tmp_path / "calls.txt").exists() else []
    return result, calls


def _shard_files(tmp_path: Path, model: str, n: int, with_rows: list[int], listed: list[int]) -> None:
    folder = tmp_path / "results" / "paper"
    folder.mkdir(parents=True, exist_ok=True)
    for i in listed:
        (folder / f"table1_{model}.shard{i}of{n}.images.csv").write_text("image_id\n")
    for i in with_rows:
        (folder / f"table1_{model}.shard{i}of{n}.csv").write_text("image_id,method\n")


def test_merge_step_merges_each_models_shards_skipping_shards_without_rows(tmp_path):
    _shard_files(tmp_path, "vgg16", 3, with_rows=[0, 1], listed=[0, 1, 2])  # shard 2 got no images
    _shard_files(tmp_path, "resnet50", 3, with_rows=[0, 1, 2], listed=[0, 1, 2])
    result, calls = _run_step(tmp_path, _step("Merge the Table 1 shards"), PROFILE="paper", NUM_SHARDS="3")
    assert result.returncode == 0, result.stdout + result.stderr
    prefix = "results/paper/table1_"
    assert calls == [
        f"merge {prefix}resnet50.shard0of3.csv {prefix}resnet50.shard1of3.csv {prefix}resnet50.shard2of3.csv "
        f"--output {prefix}resnet50.csv",
        f"merge {prefix}vgg16.shard0of3.csv {prefix}vgg16.shard1of3.csv --output {prefix}vgg16.csv",
    ]


def test_merge_step_stops_at_a_missing_shard(tmp_path):
    _shard_files(tmp_path, "vgg16", 3, with_rows=[0, 2], listed=[0, 2])
    result, calls = _run_step(tmp_path, _step("Merge the Table 1 shards"), PROFILE="paper", NUM_SHARDS="3")
    assert result.returncode == 1
    assert "::error::shard 1 of results/paper/table1_vgg16 is missing" in result.stdout
    assert calls == []


def test_merge_step_stops_when_nothing_was_downloaded(tmp_path):
    result, calls = _run_step(tmp_path, _step("Merge the Table 1 shards"), PROFILE="paper", NUM_SHARDS="3")
    assert result.returncode == 1
    assert "::error::no Table 1 shard results were downloaded into results/paper" in result.stdout


@pytest.mark.parametrize(
    ("notebooks", "arguments"),
    [
        ("", "--profile paper --device cuda"),
        (" 01  table1 ", "--profile paper --device cuda --notebooks 01 table1"),
    ],
)
def test_notebooks_step_passes_the_selection_to_run_all(tmp_path, notebooks, arguments):
    result, calls = _run_step(tmp_path, _step("Notebooks"), PROFILE="paper", NOTEBOOKS=notebooks)
    assert result.returncode == 0, result.stdout + result.stderr
    assert calls == [arguments]


# ------------------------------------------------------------------------------------- CITATION.cff
def _citation() -> dict:
    return yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))


def test_citation_has_the_keys_cff_1_2_0_requires_and_the_projects_version():
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
    citation = _citation()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert citation["cff-version"] == "1.2.0"
    assert {"cff-version", "message", "title", "authors"} <= set(citation)  # the schema's required keys
    assert all("name" in a or "family-names" in a for a in citation["authors"])
    assert citation["type"] == "software"
    assert citation["version"] == project["version"]
    assert citation["license"] == project["license"]
    for reference in citation["references"]:
        assert {"type", "title", "authors"} <= set(reference)  # required in every reference


def test_citation_references_the_paper_and_the_two_methods_table_1_reuses():
    paper, score_cam, grad_cam_pp = _citation()["references"]
    assert paper["title"] == (
        "Grad++ScoreCAM: Enhancing Visual Explanations of Deep Convolutional Networks Using Incremented "
        "Gradient and Score-Weighted Methods"
    )
    assert [a["family-names"] for a in paper["authors"]] == ["Soomro", "Niaz", "Choi"]
    assert (paper["type"], paper["journal"], paper["year"]) == ("article", "IEEE Access", 2024)
    assert score_cam["title"].startswith("Score-CAM:")
    assert (score_cam["authors"][0]["family-names"], score_cam["year"], score_cam["start"], score_cam["end"]) == (
        "Wang", 2020, 111, 119)  # fmt: skip
    assert grad_cam_pp["title"].startswith("Grad-CAM++:")
    assert (grad_cam_pp["authors"][0]["family-names"], grad_cam_pp["year"], grad_cam_pp["start"],
            grad_cam_pp["end"]) == ("Chattopadhyay", 2018, 839, 847)  # fmt: skip


@needs_check_jsonschema
def test_citation_passes_the_cff_schema_and_a_broken_one_does_not(tmp_path):
    status, output = _check("citation-file-format", ROOT / "CITATION.cff")
    assert status == 0, output
    text = (ROOT / "CITATION.cff").read_text(encoding="utf-8")
    without_authors = re.sub(r"(?m)^authors:\n  - name: .*\n", "", text)
    assert without_authors != text
    broken = tmp_path / "CITATION.cff"
    broken.write_text(without_authors, encoding="utf-8")
    status, output = _check("citation-file-format", broken)
    assert status == 1
    assert "$: 'authors' is a required property" in output


# ------------------------------------------------------------------------------- pre-commit hooks
def test_pre_commit_runs_ruff_and_strips_notebook_outputs_keeping_cell_ids():
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    hooks = {hook["id"]: (repo["repo"], hook) for repo in config["repos"] for hook in repo["hooks"]}
    assert hooks["ruff-check"][0] == hooks["ruff-format"][0] == "https://github.com/astral-sh/ruff-pre-commit"
    assert hooks["nbstripout"][0] == "https://github.com/kynan/nbstripout"
    assert "--keep-id" in hooks["nbstripout"][1]["args"]
