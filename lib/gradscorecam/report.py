"""A report of a notebook run: ``<results>/report/index.html``, readable in a browser without a server.

:func:`build_report` renders every executed notebook of ``<results>/executed/`` to HTML (nbconvert's
``HTMLExporter``, lab template, figures embedded as data URIs) and writes an index page with

* the run's provenance: the profile's parameters, start, end and wall time, device, Python / torch / library
  versions (from the run manifest ``<results>/run.json`` the pipeline writes, :func:`write_manifest`), and the
  model, weights, target layer, images, N and seed each notebook printed (its own provenance lines);
* every notebook's status (ran / FAILED with its error / did not finish / not run) and wall time;
* Figures 2-5, Table 1 beside the paper's numbers, and the paper's claims with their verdicts, each linking to
  the rendered notebook that made it, then the run's other figures and tables.

Nothing is recomputed: tables are the CSV files the notebooks exported (rendered with ``DataFrame.to_html``,
escaped), figures the PNG files they saved, captions the first paragraph of the exported Markdown tables. A
figure or table counts as made by a notebook only when that notebook's executed copy names the file in its
outputs (its ``saved:`` / ``exported:`` lines) or the manifest lists it among the files the notebook wrote,
so a stale file of an earlier run is not passed off as this run's: a piece whose notebook did not run is shown
as "not run", one whose notebook failed as "not made". Executed copies this run did not make (the manifest does
not name them, or names them "not run", e.g. after ``--notebooks 05``) and the files they name appear only in a
separate last section, "From an earlier run (its own provenance is not this run's)", with their own status,
times and provenance lines. An executed notebook or table that cannot be read is listed as "unreadable" with the
error; the rest of the report is built.
Without a manifest (a run made before manifests, or a copied ``executed/`` folder) the index says so and takes
parameters, times and status from papermill's metadata in the executed notebooks; it then cannot tell an earlier
run's copies apart and shows every copy as the run's.

The report folder is built beside its destination and swapped in whole (so no page of an earlier report
survives), and only a folder the report made (it holds the marker file ``.gradscorecam-report``) or an empty one
is ever replaced: any other folder is refused with :class:`ReportError`.

Offline: images and styles are inside the pages; MathJax and require.js, which nbconvert's template loads from
a CDN, are the only external references, and without them formulas show as TeX source while text, tables and
figures show as they are.

``python -m gradscorecam.report [--profile P] [--out RESULTS] [--figures FIGURES]`` (``./run_all.sh report``)
rebuilds the report from an earlier run, e.g. after the shards of a sharded Table 1 were merged.
"""

from __future__ import annotations

import argparse
import datetime as dt
import html
import json
import os
import platform
import re
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as distribution_version
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd

#: The run manifest's file name inside the results folder.
MANIFEST_NAME = "run.json"
#: The report's folder inside the results folder.
REPORT_DIR_NAME = "report"
#: The paper's pieces: (title, the prefix of the figure's PNG in the figures folder, what picks its notebook).
FIGURES = (
    ("Figure 2", "figure2_", "figure2"),
    ("Figure 3", "figure3_", "figure3"),
    ("Figure 4", "figure4_", "figure4"),
    ("Figure 5", "figure5_multi_object_", "figure5"),
)
#: Table 1's exported CSV is ``table1_<model>.csv``; these suffixes name its companions, not Table 1 itself.
TABLE1_COMPANIONS = ("_chart", "_claims", "_verdict")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
#: The lines a notebook prints to say how its numbers were obtained (experiments.provenance, describe_source).
_PROVENANCE_LINE = re.compile(r"^(?:RANDOM WEIGHTS \(pipeline check only\): )?model .*; weights .*|.*\| seed \d+.*$")
_VERSIONED = ("torch", "torchvision", "numpy", "pandas", "papermill", "nbconvert")


#: The file that marks a folder as a report this module built, so that only such a folder is ever replaced.
REPORT_MARKER = ".gradscorecam-report"


class ReportError(RuntimeError):
    """The report cannot be built (no run where it looked, no figures folder, a report folder that is not a
    report's); the message names the folder and the fix."""


# ------------------------------------------------------------------------------------------ the manifest
def environment() -> dict[str, Any]:
    """Where the run ran: Python, platform, CPU count, the versions of the library and the packages that make the
    numbers, and what accelerator torch sees (torch is imported for that)."""
    from .version import library_version

    versions = {"python": platform.python_version(), "gradscorecam": library_version()}
    for name in _VERSIONED:
        try:
            versions[name] = distribution_version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    try:
        import torch

        accelerator = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (CUDA not available)"
    except Exception as error:  # noqa: BLE001 - a broken torch is reported, not fatal for the report
        accelerator = f"unknown ({type(error).__name__}: {error})"
    return {
        "versions": versions,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "accelerator": accelerator,
    }


def write_manifest(out_dir: Path, manifest: Mapping[str, Any], *, name: str = MANIFEST_NAME) -> Path:
    """Write ``manifest`` as ``<out_dir>/<name>`` (default ``run.json``; UTF-8, indented) and return the path.

    An earlier manifest of that name is kept, not overwritten: it is renamed to ``<stem>.<its start>.json``
    (e.g. ``run.20260102T030000Z.json``; its ``started`` in UTC, else its modification time), so a subset run
    (``--notebooks 03``) does not erase the record of a finished multi-hour run.

    The pipeline writes: ``profile``, ``parameters`` (what the notebooks could take), ``started``/``finished``
    (ISO 8601, UTC), ``wall_seconds``, ``status`` ("ok"/"failed"), ``error``, ``environment``
    (:func:`environment`) and ``notebooks``: one entry per selected notebook in run order, ``{"name",
    "status": "ok" | "failed" | "did not finish" | "not run", "seconds", "error", "produced": [paths]}``.
    """
    path = Path(out_dir) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        _keep_earlier_manifest(path)
    path.write_text(json.dumps(manifest, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def _keep_earlier_manifest(path: Path) -> Path:
    """Rename the manifest at ``path`` to ``<stem>.<its start, UTC>.json`` (a free name); return the new path."""
    try:
        started = dt.datetime.fromisoformat(str(json.loads(path.read_text(encoding="utf-8"))["started"]))
        if started.tzinfo is None:  # the pipeline writes UTC; a naive time is taken as UTC too
            started = started.replace(tzinfo=dt.timezone.utc)
    except (OSError, ValueError, TypeError, KeyError):  # unreadable or without a start: when it was written
        started = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.timezone.utc)
    stamp = started.astimezone(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    target, n = path.with_name(f"{path.stem}.{stamp}.json"), 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.stem}.{stamp}-{n}.json")
    path.rename(target)
    return target


def read_manifest(out_dir: Path) -> dict[str, Any] | None:
    """The run manifest of ``out_dir``, or None when there is none (or it is not a JSON object)."""
    try:
        return _load_manifest(Path(out_dir) / MANIFEST_NAME)
    except (OSError, ValueError):
        return None


def _load_manifest(path: Path) -> dict[str, Any]:
    """``path`` as a manifest; OSError when it cannot be read, ValueError when it is not a JSON object."""
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(manifest, dict):
        raise ValueError(f"not a JSON object but a {type(manifest).__name__}")
    return manifest


# ------------------------------------------------------------------------------------------ executed notebooks
@dataclass
class NotebookEntry:
    """One executed notebook as the report shows it."""

    name: str
    status: str  # "ok", "failed", "did not finish", "not run", "unreadable" (its executed copy could not be read)
    seconds: float | None = None
    error: str = ""
    started: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    provenance: list[str] = field(default_factory=list)
    outputs_text: str = ""
    html: str | None = None  # the rendered page, relative to the report folder
    produced: set[str] = field(default_factory=set)  # names of the files the pipeline saw it write (manifest)
    earlier: bool = False  # executed by an earlier run than the manifest's
    executed: bool = False  # its executed copy is in executed/ (and, unless earlier, is this run's)

    @property
    def stem(self) -> str:
        return Path(self.name).stem


def read_executed(path: Path) -> NotebookEntry:
    """Status, error, time, parameters and printed provenance of one executed notebook, from its own outputs and
    papermill's metadata (``metadata.papermill``: parameters, start_time, duration, exception)."""
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    meta = notebook.metadata.get("papermill", {})
    texts: list[str] = []
    error = ""
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error" and not error:
                error = f"{output.get('ename', 'Error')}: {output.get('evalue', '')}"
                if cell.get("execution_count") is not None:
                    error = f"cell {cell['execution_count']}: {error}"
            text = output.get("text", "")
            for key, value in output.get("data", {}).items():
                if key in ("text/plain", "text/markdown") and isinstance(value, str):
                    text += "\n" + value
            texts.append(_ANSI.sub("", text))
    joined = "\n".join(texts)
    provenance = list(
        dict.fromkeys(line.strip() for line in joined.splitlines() if _PROVENANCE_LINE.match(line.strip()))
    )
    failed = bool(error) or bool(meta.get("exception"))
    return NotebookEntry(
        name=path.name,
        status="failed" if failed else "ok",
        seconds=meta.get("duration"),
        error=error or ("papermill recorded an exception" if failed else ""),
        started=meta.get("start_time") or "",
        parameters=dict(meta.get("parameters") or {}),
        provenance=provenance,
        outputs_text=joined,
    )


def _read_guarded(path: Path) -> NotebookEntry:
    """:func:`read_executed`, or an "unreadable" entry with the error (e.g. a copy truncated by a full disk)."""
    try:
        entry = read_executed(path)
    except Exception as error:  # noqa: BLE001 - one unreadable notebook must not hide the others
        entry = NotebookEntry(path.name, "unreadable", error=f"unreadable: {type(error).__name__}: {error}")
    entry.executed = True
    return entry


def _entries(executed_dir: Path, manifest: Mapping[str, Any] | None) -> tuple[list[NotebookEntry], list[NotebookEntry]]:
    """This run's notebooks and the executed copies left by earlier runs, each sorted by name.

    With a manifest, this run's notebooks are the ones it names, with its status, time and error; an executed
    copy is theirs unless the manifest says "not run". Every other copy (not named, or named "not run", e.g.
    after ``--notebooks 05``) is an earlier run's, with its own papermill status and times. Without a manifest
    there is no telling: every copy counts as the run's.
    """
    copies = sorted(executed_dir.glob("*.ipynb")) if executed_dir.is_dir() else []
    found = {p.name: _read_guarded(p) for p in copies}
    if manifest is None:
        return sorted(found.values(), key=lambda e: e.name), []
    entries: list[NotebookEntry] = []
    for item in manifest.get("notebooks") or []:
        if not isinstance(item, Mapping) or not item.get("name"):
            continue  # a hand-edited manifest: an entry without a name says nothing about a notebook
        name, status = str(item["name"]), str(item.get("status") or "unknown")
        copy = found.pop(name, None) if status != "not run" else None
        entry = copy or NotebookEntry(name, status)
        entry.status = status
        entry.seconds = item.get("seconds", entry.seconds)
        entry.error = item.get("error") or entry.error
        entry.produced = {Path(p).name for p in item.get("produced") or []}
        entries.append(entry)
    for entry in found.values():
        entry.earlier = True
    return sorted(entries, key=lambda e: e.name), sorted(found.values(), key=lambda e: e.name)


def render_notebook(executed: Path, target: Path) -> None:
    """``executed`` as one self-contained HTML page (nbconvert, lab template, images as data URIs)."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter(template_name="lab", embed_images=True).from_filename(str(executed))
    target.write_text(body, encoding="utf-8")


# ------------------------------------------------------------------------------------------ the index
@dataclass
class _Context:
    report_dir: Path
    figures_dir: Path
    entries: list[NotebookEntry]  # this run's notebooks
    earlier: list[NotebookEntry] = field(default_factory=list)  # executed copies of earlier runs

    def producer(self, file_name: str, *, earlier: bool = False) -> NotebookEntry | None:
        """The notebook of this run (``earlier``: of the earlier copies) that wrote ``file_name`` (the manifest's
        record) or names it in its outputs (the latest started, if several)."""
        pattern = re.compile(rf"(?<![\w.-]){re.escape(file_name)}\b")
        pool = self.earlier if earlier else self.entries
        named = [e for e in pool if e.status == "ok" and (file_name in e.produced or pattern.search(e.outputs_text))]
        return max(named, key=lambda e: e.started) if named else None

    def expected(self, key: str) -> NotebookEntry | None:
        """The notebook that makes the piece ``key`` (e.g. "figure2" for 01_figure2_resnet50)."""
        return next((e for e in self.entries if key in e.stem), None)

    def copy(self, path: Path) -> str:
        """Copy a figures-folder file into the report (so the report can be moved whole); its relative href."""
        target = self.report_dir / "files" / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
        return _href(f"files/{path.name}")


def _href(relative: str) -> str:
    return html.escape(quote(relative), quote=True)


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _notebook_link(entry: NotebookEntry | None) -> str:
    if entry is None:
        return "no notebook named it"
    if entry.html is None:
        return f"notebook {_esc(entry.name)} ({'could not be rendered' if entry.executed else 'no executed copy'})"
    return f'<a href="{_href(entry.html)}">{_esc(entry.name)}</a>'


def _missing(ctx: _Context, key: str, what: str) -> str:
    """Why a piece is not in the report: its notebook did not run, failed, or did not save it."""
    entry = ctx.expected(key)
    if entry is None or entry.status == "not run":
        older = any(key in e.stem for e in ctx.earlier)
        see = ' An earlier run\'s copy of its notebook is listed under "From an earlier run" below.' if older else ""
        return f'<p class="notrun">{_esc(what)}: <b>not run</b> (no notebook of this run makes it).{see}</p>'
    if entry.status != "ok":
        return (
            f'<p class="failed">{_esc(what)}: <b>not made</b>: {_notebook_link(entry)} {_esc(entry.status)}'
            f"{': ' + _esc(entry.error) if entry.error else ''}.</p>"
        )
    return f'<p class="notrun">{_esc(what)}: <b>not made</b>: {_notebook_link(entry)} ran but saved no such file.</p>'


def _caption(csv: Path) -> str:
    """The caption the notebook exported with a table: the first paragraph of its Markdown twin."""
    md = csv.with_suffix(".md")
    try:
        first = md.read_text(encoding="utf-8").split("\n\n", 1)
    except (OSError, UnicodeDecodeError):  # none, or unreadable: the table is shown without a caption
        return ""
    return first[0].strip() if len(first) == 2 and not first[0].lstrip().startswith("|") else ""


def _table(ctx: _Context, csv: Path, *, index: bool = True) -> str:
    """The CSV as an HTML table with its caption and maker; a CSV that cannot be parsed says so, with the error."""
    source = (
        f'<p class="source">From <a href="{ctx.copy(csv)}">{_esc(csv.name)}</a>, '
        f"made by {_notebook_link(ctx.producer(csv.name))}.</p>"
    )
    try:
        frame = pd.read_csv(csv, index_col=0 if index else None)
    except Exception as error:  # noqa: BLE001 - a malformed table must not hide the rest of the report
        return (
            f'<p class="failed">{_esc(csv.name)}: <b>unreadable</b>: {_esc(type(error).__name__)}: {_esc(error)}</p>'
            + source
        )
    caption = _caption(csv)
    return (
        (f'<p class="caption">{_esc(caption)}</p>' if caption else "")
        + frame.to_html(escape=True, na_rep="—", border=0, classes="data")
        + source
    )


def _figure(ctx: _Context, png: Path, title: str) -> str:
    producer = ctx.producer(png.name)
    return (
        f'<figure><a href="{ctx.copy(png)}"><img src="{_href("files/" + png.name)}" alt="{_esc(title)}"></a>'
        f"<figcaption>{_esc(title)}: {_esc(png.name)}, made by {_notebook_link(producer)}</figcaption></figure>"
    )


def _made(ctx: _Context, candidates: Sequence[Path]) -> list[Path]:
    """The files among ``candidates`` that a notebook of the report names in its outputs (this run's, not stale)."""
    return [p for p in candidates if ctx.producer(p.name) is not None]


def _figures_section(ctx: _Context) -> str:
    parts = ["<h2>Figures 2–5</h2>"]
    for title, prefix, key in FIGURES:
        pngs = _made(ctx, sorted(ctx.figures_dir.glob(f"{prefix}*.png")))
        parts.append(f"<h3>{_esc(title)}</h3>")
        parts.extend(_figure(ctx, png, title) for png in pngs) if pngs else parts.append(_missing(ctx, key, title))
    return "\n".join(parts)


def _table1_csvs(ctx: _Context, suffix: str = "") -> list[Path]:
    pattern = re.compile(rf"table1_[^.]+{re.escape(suffix)}\.csv" if suffix else r"table1_[^.]+\.csv")
    found = [p for p in sorted(ctx.figures_dir.glob("table1_*.csv")) if pattern.fullmatch(p.name)]
    if not suffix:
        found = [p for p in found if not p.stem.endswith(TABLE1_COMPANIONS)]
    return _made(ctx, found)


def _table1_section(ctx: _Context) -> str:
    parts = ["<h2>Table 1 (with the paper's numbers beside it)</h2>"]
    tables = _table1_csvs(ctx)
    if not tables:
        parts.append(_missing(ctx, "table1", "Table 1"))
    for csv in tables:
        parts.append(f"<h3>{_esc(csv.stem)}</h3>" + _table(ctx, csv))
        chart = csv.with_name(csv.stem + "_chart.png")
        if chart.is_file() and ctx.producer(chart.name):
            parts.append(_figure(ctx, chart, "Table 1 as a chart"))
    parts.append("<h2>Does the paper's claim hold? (verdicts)</h2>")
    claims = _table1_csvs(ctx, "_claims")
    if not claims:
        parts.append(_missing(ctx, "table1", "The verdict table"))
    for csv in claims:
        parts.append(f"<h3>{_esc(csv.stem)}</h3>" + _table(ctx, csv))
        full = csv.with_name(csv.name.replace("_claims.csv", "_verdict.csv"))
        if full.is_file() and ctx.producer(full.name):
            parts.append(
                f'<p>Every paired comparison (each method, each metric): <a href="{ctx.copy(full)}">'
                f"{_esc(full.name)}</a>.</p>"
            )
    return "\n".join(parts)


def _others_section(ctx: _Context, shown: set[str]) -> str:
    """The run's other figures and tables (ablation, sanity checks, Figure 5's scores): linked, figures shown."""
    files = _made(
        ctx, [p for p in sorted(ctx.figures_dir.glob("*")) if p.suffix in (".png", ".csv") and p.name not in shown]
    )
    if not files:
        return ""
    items = []
    for path in files:
        link = f'<a href="{ctx.copy(path)}">{_esc(path.name)}</a>'
        if path.suffix == ".png":
            link += f'<br><img class="thumb" src="{_href("files/" + path.name)}" alt="{_esc(path.name)}">'
        items.append(f"<li>{link} — made by {_notebook_link(ctx.producer(path.name))}</li>")
    return "<h2>Other figures and tables of this run</h2>\n<ul>" + "\n".join(items) + "</ul>"


def _random_weights(manifest: Mapping[str, Any] | None, entries: Sequence[NotebookEntry]) -> bool:
    """Whether the run used random weights: its parameters say so (weights None and no model file, the
    pipeline's rule, since a model file brings its own weights) or a notebook printed "RANDOM WEIGHTS", as one
    does for a model file whose ``build_model()`` returns an untrained network (``spec.is_random``)."""
    params = (manifest or {}).get("parameters") or next((e.parameters for e in entries if e.parameters), {})
    said = bool(params) and "weights" in params and params.get("weights") is None and not params.get("model_file")
    return said or any(line.startswith("RANDOM WEIGHTS") for e in entries for line in e.provenance)


def _definition_list(items: Mapping[str, Any]) -> str:
    rows = "".join(
        f"<tr><th>{_esc(k)}</th><td>{_esc(json.dumps(v) if not isinstance(v, str) else v)}</td></tr>"
        for k, v in items.items()
    )
    return f'<table class="kv">{rows}</table>'


def _provenance_section(
    manifest: Mapping[str, Any] | None, entries: Sequence[NotebookEntry], manifest_problem: str = ""
) -> str:
    parts = ["<h2>Provenance</h2>"]
    if manifest is None:
        why = (
            f"The run manifest ({MANIFEST_NAME}) is unreadable ({_esc(manifest_problem)})"
            if manifest_problem
            else f"No run manifest ({MANIFEST_NAME}) in the results folder: this run predates it or the folder was "
            "copied without it"
        )
        parts.append(
            f'<p class="notrun">{why}. Parameters, start times and durations below are papermill\'s, '
            "recorded in each executed notebook; versions and device of the run are unknown.</p>"
        )
        params = {k: v for e in entries for k, v in e.parameters.items()}
        if params:
            parts.append("<h3>Parameters (as papermill injected them into the executed notebooks)</h3>")
            parts.append(_definition_list(params))
    else:
        env = manifest.get("environment") or {}
        wall = manifest.get("wall_seconds")
        run = {
            "profile": manifest.get("profile"),
            "started (UTC)": manifest.get("started"),
            "finished (UTC)": manifest.get("finished"),
            "wall time": f"{wall:.0f} s" if isinstance(wall, (int, float)) else None,
            "status": manifest.get("status"),
            "device asked for": (manifest.get("parameters") or {}).get("device"),
            "accelerator torch saw": env.get("accelerator"),
            "CPU cores": env.get("cpu_count"),
            "platform": env.get("platform"),
            "command": manifest.get("command"),
        }
        parts.append("<h3>Run</h3>" + _definition_list({k: v for k, v in run.items() if v is not None}))
        parts.append("<h3>Versions</h3>" + _definition_list(env.get("versions") or {}))
        parts.append("<h3>Parameters (injected into every notebook that declares them)</h3>")
        parts.append(_definition_list(manifest.get("parameters") or {}))
    lines = [(e, line) for e in entries for line in e.provenance]
    if lines:
        parts.append(
            "<h3>Model, weights, target layer, device, images and seed, as each notebook printed them</h3><ul>"
        )
        parts.extend(f"<li>{_notebook_link(e)}: <code>{_esc(line)}</code></li>" for e, line in lines)
        parts.append("</ul>")
    return "\n".join(parts)


def _notebooks_table(entries: Sequence[NotebookEntry]) -> str:
    rows = []
    for e in entries:
        seconds = f"{e.seconds:.0f} s" if isinstance(e.seconds, (int, float)) else "—"
        rows.append(
            f'<tr class="{_esc(e.status.replace(" ", "-"))}"><td>{_notebook_link(e)}</td><td>{_esc(e.status)}</td>'
            f"<td>{_esc(e.started or '—')}</td><td>{seconds}</td><td><pre>{_esc(e.error)}</pre></td></tr>"
        )
    return (
        '<table class="data"><tr><th>notebook</th><th>status</th><th>started (UTC)</th>'
        "<th>wall time</th><th>error</th></tr>" + "".join(rows) + "</table>"
    )


def _earlier_section(ctx: _Context, out_dir: Path) -> str:
    """The executed copies this run did not make and the files they name that no notebook of this run made:
    apart from the rest, each with its own status, times and provenance lines."""
    if not ctx.earlier:
        return ""
    parts = [
        '<h2 id="earlier">From an earlier run (its own provenance is not this run\'s)</h2>',
        f"<p>Executed copies in <code>executed/</code> that this run did not make ({MANIFEST_NAME} does not name "
        "them, or names them “not run”), and the figures and tables they name that no notebook of this run made. "
        "Their status, times and provenance lines are their own; nothing above comes from them.</p>",
    ]
    kept = sorted(p.name for p in out_dir.glob("run.*.json"))
    if kept:
        parts.append(
            "<p>Other manifests kept in the results folder (earlier runs' and shards'; each names its notebooks): "
            + ", ".join(f"<code>{_esc(name)}</code>" for name in kept)
            + ".</p>"
        )
    if _random_weights(None, ctx.earlier):
        parts.append('<p class="banner">Some of these copies were made with RANDOM WEIGHTS: a pipeline check.</p>')
    parts.append(_notebooks_table(ctx.earlier))
    lines = [(e, line) for e in ctx.earlier for line in e.provenance]
    if lines:
        parts.append("<h3>Their provenance lines, as each notebook printed them</h3><ul>")
        parts.extend(f"<li>{_notebook_link(e)}: <code>{_esc(line)}</code></li>" for e, line in lines)
        parts.append("</ul>")
    files = [
        p
        for p in sorted(ctx.figures_dir.glob("*"))
        if p.suffix in (".png", ".csv") and ctx.producer(p.name) is None and ctx.producer(p.name, earlier=True)
    ]
    items = []
    for path in files:
        maker = ctx.producer(path.name, earlier=True)
        link = f'<a href="{ctx.copy(path)}">{_esc(path.name)}</a>'
        if path.suffix == ".png":
            link += f'<br><img class="thumb" src="{_href("files/" + path.name)}" alt="{_esc(path.name)}">'
        started = f", started {_esc(maker.started)}" if maker and maker.started else ""
        items.append(f"<li>{link} — named by {_notebook_link(maker)}{started}</li>")
    if items:
        parts.append("<h3>Their figures and tables</h3><ul>" + "\n".join(items) + "</ul>")
    return "\n".join(parts)


#: How every index page begins (also how a report made before the marker file is recognised).
_PAGE_HEAD = '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
_STYLE = """
body { font-family: sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; }
table.data, table.kv { border-collapse: collapse; font-size: 0.9em; margin: 0.5em 0; }
table.data td, table.data th, table.kv td, table.kv th { border: 1px solid #ccc; padding: 2px 6px; text-align: left; }
table.kv th { background: #f3f3f3; }
.banner { background: #fee; border: 2px solid #c00; padding: 0.5em 1em; font-weight: bold; }
.failed, tr.failed, tr.did-not-finish { color: #a00; }
.notrun, tr.not-run { color: #777; }
.caption { font-style: italic; }
figure img { max-width: 100%; } img.thumb { max-width: 360px; }
pre { white-space: pre-wrap; margin: 0; }
"""


def build_report(out_dir: Path, figures_dir: Path | None = None, *, report_dir: Path | None = None) -> Path:
    """Build ``<out_dir>/report/`` (or ``report_dir``) from the run in ``out_dir``; return its ``index.html``.

    ``out_dir`` is the run's results folder (with ``executed/`` and, from the pipeline, ``run.json``);
    ``figures_dir`` defaults to the manifest's ``figures_dir`` parameter, else the one papermill injected into
    the executed notebooks; when that folder does not exist (a run that failed before saving a figure) the page
    says so in a banner. The report is built in a new folder beside ``report_dir`` and swapped in whole, so no
    page of an earlier report survives; an existing ``report_dir`` is replaced only when it is empty or holds
    :data:`REPORT_MARKER` (a report made it).

    Raises :class:`ReportError` when ``out_dir`` has neither executed notebooks nor a manifest, when the figures
    folder is unknown or a given ``figures_dir`` does not exist, and when ``report_dir`` is not a report's folder.
    """
    out_dir = Path(out_dir)
    manifest, manifest_problem = None, ""
    if (out_dir / MANIFEST_NAME).exists():
        try:
            manifest = _load_manifest(out_dir / MANIFEST_NAME)
        except (OSError, ValueError) as error:  # shown on the page; the executed notebooks still tell a lot
            manifest_problem = f"{type(error).__name__}: {error}"
    executed_dir = out_dir / "executed"
    if manifest is None and not any(executed_dir.glob("*.ipynb")):
        raise ReportError(
            f"{out_dir}: no executed notebooks (executed/*.ipynb) and no readable {MANIFEST_NAME}"
            f"{' (' + manifest_problem + ')' if manifest_problem else ''}: is this the results folder of a run? "
            "Pass the folder run_all.sh wrote (--out DIR), e.g. results/smoke."
        )
    entries, earlier = _entries(executed_dir, manifest)
    figures_dir, figures_banner = _figures_folder(out_dir, figures_dir, manifest, [*entries, *earlier])
    final = _checked_report_dir(Path(report_dir) if report_dir is not None else out_dir / REPORT_DIR_NAME)
    final.parent.mkdir(parents=True, exist_ok=True)
    building = final.with_name(f".{final.name}.building-{os.getpid()}-{time.time_ns()}")
    building.mkdir()
    try:
        (building / REPORT_MARKER).write_text(
            "Made by gradscorecam.report: this folder is replaced whole when the report is rebuilt.\n", encoding="utf-8"
        )
        _write_pages(building, out_dir, executed_dir, figures_dir, figures_banner, manifest, manifest_problem,
                     entries, earlier)  # fmt: skip
        _swap_in(building, _checked_report_dir(final))  # checked again: it may have changed while we built
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return final / "index.html"


def _figures_folder(
    out_dir: Path, given: Path | None, manifest: Mapping[str, Any] | None, entries: Sequence[NotebookEntry]
) -> tuple[Path, str]:
    """The figures folder and, when the run's own folder does not exist, the banner that says so."""
    if given is not None:
        if not Path(given).is_dir():
            raise ReportError(
                f"--figures {given}: no such folder. Pass the folder the run saved its figures and tables in "
                "(--figures DIR, e.g. figures/smoke), or leave it out to use the one the run used."
            )
        return Path(given), ""
    params = (manifest or {}).get("parameters") or next((e.parameters for e in entries if e.parameters), {})
    if not params.get("figures_dir"):
        raise ReportError(
            f"{out_dir}: the run's figures folder is unknown (neither {MANIFEST_NAME} nor the executed notebooks "
            "name one). Pass it with --figures DIR, e.g. figures/smoke."
        )
    folder = Path(params["figures_dir"])
    if folder.is_dir():
        return folder, ""
    return folder, (
        f"The run's figures folder {folder} does not exist: no figure or table of the run is shown. If the run "
        f"saved none (it failed first), that is all; if the folder was moved, rebuild with "
        f"./run_all.sh report --out {out_dir} --figures DIR."
    )


def _checked_report_dir(path: Path) -> Path:
    """``path`` (absolute) when the report may write there: new, empty, or a report's (it holds the marker)."""
    path = path.expanduser().resolve()
    if not path.exists():
        return path
    if not path.is_dir():
        raise ReportError(
            f"report folder {path}: a file, not a folder. Pass a new or empty folder with --report-dir DIR."
        )
    if not _made_by_a_report(path) and any(path.iterdir()):
        raise ReportError(
            f"report folder {path}: not empty, and no report made it (it has no {REPORT_MARKER}); a report replaces "
            "its folder whole, so this one is left untouched. Pass a new or empty folder with --report-dir DIR, or "
            "move that folder's files away first."
        )
    return path


def _made_by_a_report(path: Path) -> bool:
    """``path`` holds the marker, or is a report built before the marker existed: nothing but ``index.html``
    (this module's page, by its first bytes), ``notebooks/`` and ``files/``."""
    if (path / REPORT_MARKER).is_file():
        return True
    try:
        with (path / "index.html").open(encoding="utf-8") as page:
            head = page.read(len(_PAGE_HEAD))
    except (OSError, UnicodeDecodeError):
        return False
    return head == _PAGE_HEAD and {p.name for p in path.iterdir()} <= {"index.html", "notebooks", "files"}


def _swap_in(building: Path, final: Path) -> None:
    """Put the finished ``building`` folder in the place of ``final`` (moving an earlier report aside first)."""
    if not final.exists():
        os.replace(building, final)
        return
    old = final.with_name(f".{final.name}.replaced-{os.getpid()}-{time.time_ns()}")
    os.replace(final, old)
    os.replace(building, final)
    shutil.rmtree(old, ignore_errors=True)


def _write_pages(
    report_dir: Path,
    out_dir: Path,
    executed_dir: Path,
    figures_dir: Path,
    figures_banner: str,
    manifest: Mapping[str, Any] | None,
    manifest_problem: str,
    entries: list[NotebookEntry],
    earlier: list[NotebookEntry],
) -> None:
    """The rendered notebooks, the copied files and ``index.html``, into ``report_dir``."""
    (report_dir / "notebooks").mkdir(parents=True)
    for entry in [*entries, *earlier]:
        executed = executed_dir / entry.name
        if entry.executed and executed.is_file():
            page = f"notebooks/{entry.stem}.html"
            try:
                render_notebook(executed, report_dir / page)
                entry.html = page
            except Exception as error:  # noqa: BLE001 - one unreadable notebook must not hide the others
                if "unreadable" not in entry.error:  # already said why
                    entry.error = (
                        entry.error + "; " if entry.error else ""
                    ) + f"could not render: {type(error).__name__}: {error}"
    ctx = _Context(report_dir, figures_dir, entries, earlier)
    profile = (manifest or {}).get("profile") or next(
        (e.parameters.get("profile") for e in [*entries, *earlier] if e.parameters), "?"
    )
    shown = {p.name for _, prefix, _ in FIGURES for p in ctx.figures_dir.glob(f"{prefix}*.png")}
    shown |= {p.name for p in ctx.figures_dir.glob("table1_*")}
    body = [f"<h1>Grad++ScoreCAM compendium: run report, profile {_esc(profile)}</h1>"]
    if _random_weights(manifest, entries):
        body.append(
            '<p class="banner">Made with RANDOM WEIGHTS (weights=None): a pipeline check only, not a result.</p>'
        )
    if manifest is not None and manifest.get("status") == "failed":
        body.append(f'<p class="banner">This run FAILED: {_esc(manifest.get("error", ""))}</p>')
    if figures_banner:
        body.append(f'<p class="banner">{_esc(figures_banner)}</p>')
    if earlier:
        body.append(
            f"<p>{len(earlier)} executed notebook(s) in <code>executed/</code> are an earlier run's: they are shown "
            'only under <a href="#earlier">From an earlier run</a>.</p>'
        )
    body.append(
        f"<p>Results folder: <code>{_esc(out_dir.resolve())}</code>; figures folder: "
        f"<code>{_esc(ctx.figures_dir)}</code>; report built {_esc(_now())}.</p>"
    )
    body += [
        "<h2>Notebooks</h2>" + _notebooks_table(entries),
        _provenance_section(manifest, entries, manifest_problem),
        _figures_section(ctx),
        _table1_section(ctx),
        _others_section(ctx, shown),
        _earlier_section(ctx, out_dir),
    ]
    (report_dir / "index.html").write_text(
        _PAGE_HEAD
        + f"<title>Run report: {_esc(profile)}</title><style>{_STYLE}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n",
        encoding="utf-8",
    )


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


# ------------------------------------------------------------------------------------------ command line
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="run_all.sh report",
        description="Rebuild the HTML report of an earlier run from its executed notebooks, tables and figures.",
    )
    parser.add_argument(
        "--profile",
        default="sample",
        help="the run's profile: its results folder is results/<profile> of this checkout (default sample)",
    )
    parser.add_argument("--out", type=Path, help="the run's results folder (default results/<profile>)")
    parser.add_argument("--figures", type=Path, help="the run's figures folder (default: the one the run used)")
    parser.add_argument(
        "--report-dir",
        type=Path,
        help="where to write the report (default <results>/report): a new or empty folder, or an earlier report's",
    )
    args = parser.parse_args(argv)
    try:
        out_dir = args.out
        if out_dir is None:
            from .pipeline import PipelineError, find_notebooks_dir

            try:
                out_dir = find_notebooks_dir().parent / "results" / args.profile
            except PipelineError:
                raise ReportError(
                    "not in a compendium checkout: pass the run's results folder with --out DIR"
                ) from None
        index = build_report(out_dir, args.figures, report_dir=args.report_dir)
    except ReportError as error:
        print(f"run_all.sh report: {error}", file=sys.stderr)
        return 1
    print(f"report: {index}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
