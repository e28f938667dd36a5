"""Run the compendium's notebooks in order with papermill: the engine behind ``run_all.sh``.

``python -m gradscorecam.pipeline run --profile sample`` executes every ``notebooks/NN_*.ipynb`` in order,
injecting the profile's parameters (only those a notebook declares in its ``parameters`` cell), writes the
executed copies to ``<out>/executed/``, stops at the first failure with the notebook, the failing cell's
error and the path of the executed copy, and ends with what each notebook produced and how long it took. Every
run, a failed or interrupted one too, then writes its manifest ``<out>/run.json`` (an earlier one is kept as
``run.<its start>.json``) and the HTML report ``<out>/report/index.html`` (:mod:`gradscorecam.report`). A shard
of a sharded Table 1 (``--shard-index i --num-shards n``) writes ``run.shard-<i>-of-<n>.json`` and no report,
since the shards share the results folder: ``run_all.sh report`` builds it after the merge.

Profiles:

* ``smoke``: random weights, 2 built-in images, small channel budget, few noise samples. A pipeline check
  for CI: every figure and table it makes is stamped "random weights — pipeline check only".
* ``sample`` (default): pretrained torchvision weights (downloaded once by torchvision), the built-in
  photographs, Table 1 on them (not the paper's protocol, and the notebook says so).
* ``paper``: the paper's protocol: an ImageNet validation folder (``--imagenet-val`` or ``IMAGENET_VAL``),
  N = 1000 random images with a fixed seed, GPU when present.

The notebooks are not part of the installed package: they are taken from the compendium checkout the command
runs in (the current folder or a folder above it with ``notebooks/NN_*.ipynb``, as ``run_all.sh`` does), or
from ``--notebooks-dir``. Results and figures go to ``results/<profile>`` and ``figures/<profile>`` of that
checkout, and its ``lib/`` (when it has one) comes first on the kernels' ``PYTHONPATH``, so a checkout runs its
own library whatever copy is installed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NOTEBOOK_PATTERN = "[0-9][0-9]_*.ipynb"
KERNEL_NAME = "gradscorecam"
#: The web app's variables, which notebook 90 reads as defaults (the values of gradscorecam.explorer.app.ENVIRONMENT).
APP_ENVIRONMENT = ("GRADSCORECAM_MODEL_FILE", "GRADSCORECAM_IMAGES", "GRADSCORECAM_DEVICE", "GRADSCORECAM_WEIGHTS")

PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {
        "weights": None,
        "image_source": "builtin",
        "n_images": 2,
        "n_figure_images": 2,
        "n_multi_images": 1,
        "n_ablation_images": 2,
        "max_channels": 16,
        "smooth_samples": 4,
        "deletion_steps": 8,
        "device": "cpu",
    },
    "sample": {
        "weights": "DEFAULT",
        "image_source": "builtin",
        "n_images": 1000,  # all built-in photographs (fewer than 1000)
        "n_figure_images": 4,
        "n_multi_images": 3,
        "n_ablation_images": 50,
        "max_channels": None,
        "smooth_samples": 25,
        "deletion_steps": 50,
        "device": "auto",
    },
    "paper": {
        "weights": "DEFAULT",
        "image_source": "imagenet",
        "n_images": 1000,
        "n_figure_images": 4,
        "n_multi_images": 3,
        "n_ablation_images": 200,
        "max_channels": None,
        "smooth_samples": 25,
        "deletion_steps": 50,
        "device": "auto",
    },
}


class PipelineError(RuntimeError):
    """A notebook failed or the run was misconfigured; the message says which and where to look."""


@dataclass
class NotebookRun:
    notebook: Path
    executed: Path
    seconds: float
    produced: list[Path]


def find_notebooks_dir(start: Path | None = None) -> Path:
    """The ``notebooks/`` folder of the compendium checkout that ``start`` (default: the current folder) lies in:
    the first of ``start`` and the folders above it whose ``notebooks/`` holds numbered notebooks.

    Not the installed package's location: ``pip install .`` copies the library, not the notebooks.
    """
    start = (start or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        if any((folder / "notebooks").glob(NOTEBOOK_PATTERN)):
            return folder / "notebooks"
    raise PipelineError(
        f"no compendium checkout here: neither {start} nor a folder above it has a notebooks/ folder with the "
        "numbered notebooks (NN_*.ipynb), which the installed package does not contain. Run this from your "
        "checkout of the compendium (cd gradscorecam && ./run_all.sh), or pass --notebooks-dir PATH/notebooks."
    )


def checked_notebooks_dir(folder: Path) -> Path:
    """``--notebooks-dir``: a folder with numbered notebooks, or a PipelineError saying what is missing."""
    folder = folder.expanduser().resolve()
    if not folder.is_dir() or not any(folder.glob(NOTEBOOK_PATTERN)):
        raise PipelineError(f"--notebooks-dir {folder}: no numbered notebooks (NN_*.ipynb) there")
    return folder


def discover_notebooks(selection: Sequence[str] | None = None, folder: Path | None = None) -> list[Path]:
    """The numbered notebooks in run order; ``selection`` picks by number ("01") or name fragment ("table1").

    ``folder`` defaults to the checkout's (:func:`find_notebooks_dir`).
    """
    folder = folder if folder is not None else find_notebooks_dir()
    notebooks = sorted(p for p in folder.glob(NOTEBOOK_PATTERN))
    if not selection:
        return notebooks

    def matches(notebook: Path, part: str) -> bool:
        return notebook.name.startswith(part) or part in notebook.stem

    chosen = [nb for nb in notebooks if any(matches(nb, s) for s in selection)]
    missing = [s for s in selection if not any(matches(nb, s) for nb in notebooks)]
    if missing:
        names = ", ".join(nb.name for nb in notebooks)
        raise PipelineError(f"no notebook matches {', '.join(map(repr, missing))}; available: {names}")
    return chosen


def profile_parameters(profile: str, overrides: dict[str, Any], out_dir: Path, figures_dir: Path) -> dict[str, Any]:
    """The parameters every notebook may take: the profile's values, then the command line's overrides."""
    if profile not in PROFILES:
        raise PipelineError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    params = {"profile": profile, **PROFILES[profile]}
    params.update({k: v for k, v in overrides.items() if v is not None})
    index, shards = params.get("shard_index"), params.get("num_shards")
    if (index is None) != (shards is None) or (index is not None and shards is not None and not 0 <= index < shards):
        raise PipelineError(
            f"--shard-index {index} --num-shards {shards}: give both, with 0 <= index < shards "
            "(e.g. --shard-index 0 --num-shards 8 for the first of 8 jobs)"
        )
    if params["image_source"] == "imagenet":
        root = params.get("imagenet_val") or os.environ.get("IMAGENET_VAL")
        if not root:
            raise PipelineError(
                "the paper profile needs your ILSVRC2012 validation folder: pass --imagenet-val /path/to/val or set "
                "IMAGENET_VAL (flat ILSVRC2012_val_*.JPEG with LOC_val_solution.csv, or one sub-folder per WordNet id)."
            )
        params["image_source"] = root
    for key in ("model_file", "image_source"):
        value = params.get(key)
        if not value or value == "builtin":
            continue
        path = Path(value).expanduser().resolve()  # a quoted "~/..." is the user's home too
        if not path.exists():
            raise PipelineError(f"--{key.replace('_', '-')} {value}: no such file or folder")
        params[key] = str(path)
    params["output_dir"] = str(out_dir.resolve())
    params["figures_dir"] = str(figures_dir.resolve())
    return params


def ensure_kernel() -> str:
    """Register this interpreter as a Jupyter kernel inside its own environment, so papermill runs the
    notebooks with the Python that has the project installed (not whatever "python3" kernel a user has)."""
    from ipykernel.kernelspec import install

    install(kernel_name=KERNEL_NAME, display_name="Python (gradscorecam)", prefix=sys.prefix)
    return KERNEL_NAME


def drop_app_environment(environ: MutableMapping[str, str]) -> list[str]:
    """Remove the web app's variables (``GRADSCORECAM_MODEL_FILE`` ..., :data:`gradscorecam.explorer.app.ENVIRONMENT`)
    from ``environ``; return the names removed.

    Notebook 90's parameters cell reads them as its defaults, and papermill injects only the parameters the run
    has (no ``model_file`` without ``--model-file``), so a run started where they are set (a JupyterHub spawner
    sets them for the app) would explain another model than its manifest records. Listed here, not imported from
    the app, so that the pipeline does not import the explorer (and torch); a test checks the two lists agree.
    """
    removed = [name for name in APP_ENVIRONMENT if name in environ]
    for name in removed:
        del environ[name]
    return removed


def declared_parameters(notebook: Path) -> set[str]:
    """Names assigned at the top level of the notebook's cell tagged ``parameters``."""
    import nbformat

    cells = nbformat.read(notebook, as_version=4).cells
    names: set[str] = set()
    for cell in cells:
        if cell.cell_type == "code" and "parameters" in cell.metadata.get("tags", []):
            names |= set(re.findall(r"^([A-Za-z_]\w*)\s*(?::[^=]+)?=(?!=)", cell.source, flags=re.MULTILINE))
    return names


def run_notebooks(
    notebooks: Sequence[Path],
    params: dict[str, Any],
    out_dir: Path,
    *,
    kernel_name: str | None = None,
    log_output: bool = False,
    record: list[dict[str, Any]] | None = None,
) -> list[NotebookRun]:
    """Execute ``notebooks`` in order; raise :class:`PipelineError` at the first failure.

    ``record``, when given, gets one entry per notebook started, for the run manifest
    (:func:`gradscorecam.report.write_manifest`): name, status ("ok", "failed", "did not finish"), seconds,
    error message, and the files an "ok" notebook produced. The entry is made "did not finish" when the notebook
    starts, so one that an exception outside papermill or Ctrl-C stops stays recorded as such.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    executed_dir = out_dir / "executed"
    executed_dir.mkdir(parents=True, exist_ok=True)
    watched = [Path(params["output_dir"]), Path(params["figures_dir"])]
    runs: list[NotebookRun] = []
    for notebook in notebooks:
        _record(record, notebook, "did not finish", None, "")  # until it is known how it ended
        executed = executed_dir / notebook.name
        declared = declared_parameters(notebook)
        injected = {k: v for k, v in params.items() if k in declared}
        before = _snapshot(watched)
        print(f"==> {notebook.name}", flush=True)
        start = time.perf_counter()
        try:
            papermill.execute_notebook(
                str(notebook), str(executed), parameters=injected, kernel_name=kernel_name,
                cwd=str(notebook.parent), progress_bar=False, log_output=log_output,
            )  # fmt: skip
        except PapermillExecutionError as error:
            _record(record, notebook, "failed", start, f"cell {error.exec_count}: {error.ename}: {error.evalue}")
            raise PipelineError(
                f"{notebook.name} failed in cell {error.exec_count}: {error.ename}: {error.evalue}\n"
                f"    executed copy with the full traceback: {executed}"
            ) from None
        except Exception as error:  # the kernel died (out of memory, killed), would not start, timed out ...
            _record(record, notebook, "did not finish", start, f"{type(error).__name__}: {error}")
            raise PipelineError(
                f"{notebook.name} did not finish: {type(error).__name__}: {error}\n"
                f"    executed copy up to the last finished cell: {executed}"
            ) from error
        seconds = time.perf_counter() - start
        produced = sorted(p for p, t in _snapshot(watched).items() if before.get(p) != t and "executed" not in p.parts)
        _record(record, notebook, "ok", start, "", produced)
        runs.append(NotebookRun(notebook, executed, seconds, produced))
        print(f"    done in {seconds:.0f} s, {len(produced)} file(s) written", flush=True)
    return runs


def _record(
    record: list[dict[str, Any]] | None,
    notebook: Path,
    status: str,
    start: float | None,
    error: str,
    produced: Sequence[Path] = (),
) -> None:
    """Record the notebook's state, replacing its entry when it has one (its "did not finish" from the start)."""
    if record is not None:
        if record and record[-1]["name"] == notebook.name:
            record.pop()
        seconds = None if start is None else round(time.perf_counter() - start, 3)
        record.append({"name": notebook.name, "status": status, "seconds": seconds, "error": error,
                       "produced": [str(p) for p in produced]})  # fmt: skip


def _snapshot(folders: Sequence[Path]) -> dict[Path, int]:
    """Files under ``folders`` with their modification times, so that rewritten files count as produced."""
    return {p: p.stat().st_mtime_ns for folder in folders if folder.exists() for p in folder.rglob("*") if p.is_file()}


def report(runs: Sequence[NotebookRun], params: dict[str, Any]) -> str:
    """The end-of-run summary: time per notebook and the files each produced."""
    lines = [f"Profile {params['profile']!r}: {len(runs)} notebook(s) in {sum(r.seconds for r in runs):.0f} s"]
    results = Path(params["output_dir"])
    for run in runs:
        lines.append(f"  {run.notebook.name:<40} {run.seconds:7.0f} s   executed copy: {run.executed}")
        # Files in sub-folders of the results folder (one per configuration, e.g. the ablation) are counted.
        nested = [p for p in run.produced if p.is_relative_to(results) and len(p.relative_to(results).parts) > 1]
        lines.extend(f"      {p}" for p in run.produced if p not in nested)
        if nested:
            folders = sorted({str(results / p.relative_to(results).parts[0]) for p in nested})
            lines.append(f"      and {len(nested)} results files under {', '.join(folders)}")
    if params.get("weights") is None and not params.get("model_file"):  # a model file brings its own weights
        lines.append("  Made with RANDOM WEIGHTS: a pipeline check only, not a result.")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run_all.sh", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute the notebooks in order")
    run.add_argument("--profile", default="sample", choices=sorted(PROFILES))
    run.add_argument("--device", help="cpu, cuda, cuda:1 or auto (default: the profile's)")
    run.add_argument(
        "--notebooks", nargs="+", metavar="NB", help="run only these, by number or name part (e.g. 01 table1)"
    )
    run.add_argument(
        "--model-file",
        help="a Python file whose build_model() returns the model to explain instead of the torchvision networks",
    )
    run.add_argument(
        "--images", dest="image_source", help="a labels CSV or an ImageNet validation folder to take the images from"
    )
    run.add_argument("--imagenet-val", help="ILSVRC2012 validation folder (paper profile; or set IMAGENET_VAL)")
    run.add_argument(
        "--n-images",
        type=int,
        help="number of images for Table 1, and the most images with several boxes for Figure 5's per-object scores (default: the profile's)",
    )
    run.add_argument("--seed", type=int, help="seed of the random image sample (default 0)")
    run.add_argument("--batch-size", type=int, help="masked inputs per forward pass of the score-based methods")
    run.add_argument("--shard-index", type=int, help="Table 1: which shard of the images this job runs (0-based)")
    run.add_argument("--num-shards", type=int, help="Table 1: how many shards the images are split into")
    run.add_argument("--out", type=Path, help="results folder (default results/<profile>)")
    run.add_argument("--figures", type=Path, help="figures folder (default figures/<profile>)")
    run.add_argument("--log-output", action="store_true", help="stream the notebooks' output to the terminal")
    run.add_argument("--notebooks-dir", type=Path,
                     help="the compendium's notebooks/ folder (default: the one of the checkout this runs in)")  # fmt: skip
    merge = sub.add_parser("merge", help="combine the Table 1 shards of a sharded run into one results file")
    merge.add_argument("shards", nargs="+", type=Path, help="the shards' results files (CSV)")
    merge.add_argument("--output", type=Path, required=True, help="where to write the merged CSV")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "merge":
        return _merge(args.shards, args.output)
    overrides = {
        key: getattr(args, key)
        for key in ("device", "model_file", "image_source", "imagenet_val", "n_images", "seed", "batch_size",
                    "shard_index", "num_shards")
    }  # fmt: skip
    try:
        notebook_dir = checked_notebooks_dir(args.notebooks_dir) if args.notebooks_dir else find_notebooks_dir()
        root = notebook_dir.parent
        out_dir = args.out or root / "results" / args.profile
        figures_dir = args.figures or root / "figures" / args.profile
        params = profile_parameters(args.profile, overrides, out_dir, figures_dir)
        notebooks = discover_notebooks(args.notebooks, notebook_dir)
        ignored = drop_app_environment(os.environ)  # the notebooks get this run's values, not the app's options
        if ignored:
            print(
                f"Ignoring {', '.join(ignored)} (the web app's options); a run takes --model-file, --images, --device"
            )
        if (root / "lib" / "gradscorecam").is_dir():
            # The kernels import this checkout's library, whatever else is installed.
            os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root / "lib"), os.environ.get("PYTHONPATH")]))
        print(f"Notebooks from {notebook_dir}; library from {_library_location(root)}")
        print(f"Running {len(notebooks)} notebook(s), profile {args.profile!r}, parameters:")
        print(json.dumps(params, indent=2, default=str))
    except PipelineError as error:
        print(f"\nrun_all.sh: FAILED: {error}", file=sys.stderr)
        return 1
    record: list[dict[str, Any]] = []
    started, clock = _utc_now(), time.perf_counter()
    failure: BaseException | None = None
    try:
        runs = run_notebooks(notebooks, params, out_dir, kernel_name=ensure_kernel(), log_output=args.log_output,
                             record=record)  # fmt: skip
    except PipelineError as error:
        failure = error
    except BaseException as error:  # Ctrl-C, or a crash outside the notebooks: recorded, then raised on
        failure = error
        raise
    finally:  # the manifest and report are written after a failure too, then the failure is reported
        _write_report(out_dir, notebooks, params, record, started, time.perf_counter() - clock, failure, argv)
    if failure is not None:
        print(f"\nrun_all.sh: FAILED: {failure}", file=sys.stderr)
        return 1
    print("\n" + report(runs, params))
    return 0


def _utc_now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def manifest_name(params: dict[str, Any]) -> str:
    """``run.json``, or ``run.shard-<i>-of-<n>.json`` for a shard of a sharded Table 1 (the shards of one run
    share its results folder, so each keeps its own manifest)."""
    from .report import MANIFEST_NAME

    if params.get("shard_index") is None:
        return MANIFEST_NAME
    return f"run.shard-{params['shard_index']}-of-{params.get('num_shards')}.json"


def failure_message(failure: BaseException | None) -> str:
    """What the manifest records as the run's error: a notebook's failure as the pipeline said it, Ctrl-C as
    "interrupted (Ctrl-C)", any other exception as ``<type>: <message>``."""
    if failure is None:
        return ""
    if isinstance(failure, PipelineError):
        return str(failure)
    if isinstance(failure, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    return f"{type(failure).__name__}: {failure}"


def _write_report(
    out_dir: Path,
    notebooks: Sequence[Path],
    params: dict[str, Any],
    record: list[dict[str, Any]],
    started: str,
    wall_seconds: float,
    failure: BaseException | None,
    argv: Sequence[str] | None,
) -> None:
    """Write the run manifest (``<out>/run.json``; a shard's ``run.shard-<i>-of-<n>.json``) and, unless this
    is a shard, the HTML report (``<out>/report/index.html``).

    Notebooks after a failure are recorded as "not run"; the one a crash or Ctrl-C stopped as "did not finish"
    with the run's error (:func:`failure_message`). A report that cannot be built is said, never raised: it must
    not hide the run's own result or failure.
    """
    from . import report as run_report

    error = failure_message(failure)
    done = {entry["name"] for entry in record}
    entries = record + [{"name": nb.name, "status": "not run", "seconds": None, "error": "", "produced": []}
                        for nb in notebooks if nb.name not in done]  # fmt: skip
    for entry in entries:
        if entry["status"] == "did not finish" and not entry["error"]:
            entry["error"] = error
    name = manifest_name(params)
    try:
        path = run_report.write_manifest(out_dir, {
            "profile": params["profile"],
            "command": " ".join(["run_all.sh", *(sys.argv[1:] if argv is None else argv)]),
            "parameters": params,
            "started": started,
            "finished": _utc_now(),
            "wall_seconds": round(wall_seconds, 3),
            "status": "failed" if failure is not None else "ok",
            "error": error,
            "environment": run_report.environment(),
            "notebooks": entries,
        }, name=name)  # fmt: skip
        if name != run_report.MANIFEST_NAME:
            print(
                f"\nManifest: {path}. No report for a shard (the shards share the results folder): merge the "
                "shards, run the Table 1 notebook once more on the merged file, and that run writes it "
                f"(or: ./run_all.sh report --out {out_dir}).",
                flush=True,
            )
            return
        # The figures folder from the manifest: one that does not exist yet (a failure before any figure) is
        # a banner on the page, where an explicit figures_dir would be an error.
        index = run_report.build_report(out_dir)
        print(f"\nReport: {index}", flush=True)
    except Exception as problem:  # noqa: BLE001
        print(f"\nrun_all.sh: the report could not be built: {type(problem).__name__}: {problem}", file=sys.stderr)


def _library_location(root: Path) -> Path:
    if (root / "lib" / "gradscorecam").is_dir():
        return root / "lib" / "gradscorecam"
    return Path(__file__).resolve().parent  # the installed package


def _merge(shards: Sequence[Path], output: Path) -> int:
    from .results import merge_results

    if output.exists():
        print(f"run_all.sh merge: {output} exists; choose another --output or remove it first", file=sys.stderr)
        return 1
    merged = merge_results(shards)
    output.parent.mkdir(parents=True, exist_ok=True)
    merged.to_csv(output, index=False)
    print(f"merged {len(shards)} shard(s), {len(merged)} rows -> {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
