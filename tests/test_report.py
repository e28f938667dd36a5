"""The run report (gradscorecam.report): a fake run folder of tiny executed notebooks, a figure and Table 1's CSVs.

The fake run: notebook 01 saved Figure 2, notebook 04 failed, notebook 05 exported Table 1 and its verdicts,
notebooks 02 and 03 were selected but not reached; a stale Figure 3 of an earlier run lies in the figures
folder without any notebook naming it.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import nbformat
import pytest
from PIL import Image

from gradscorecam import pipeline, report

RANDOM_LINE = ("RANDOM WEIGHTS (pipeline check only): model resnet50; weights random (weights=None, torch seed 0); "
               "target layer layer4; device cpu")  # fmt: skip


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.links += [value for name, value in attrs if name in ("href", "src") and value]


def local_links(page: Path) -> list[str]:
    """Every href/src of ``page`` that points at a file (not the web, an anchor or an inline data URI)."""
    parser = _Links()
    parser.feed(page.read_text(encoding="utf-8"))
    return [link for link in parser.links if not re.match(r"(?:https?:|data:|#|mailto:)", link)]


def assert_links_resolve(page: Path) -> list[str]:
    links = local_links(page)
    missing = [link for link in links if not (page.parent / unquote(link)).is_file()]
    assert not missing, f"{page}: links to missing files {missing}"
    return links


def executed_notebook(
    path: Path, outputs: list[dict], *, duration: float, parameters: dict, error: tuple | None = None
) -> None:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("print('work')", execution_count=1)
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text) for text in outputs]
    nb.cells = [nbformat.v4.new_markdown_cell("# A notebook"), cell]
    if error:
        broken = nbformat.v4.new_code_cell("raise ValueError()", execution_count=2)
        broken.outputs = [
            nbformat.v4.new_output("error", ename=error[0], evalue=error[1], traceback=["\x1b[31mTraceback"])
        ]
        nb.cells.append(broken)
    nb.metadata["papermill"] = {"duration": duration, "start_time": "2026-01-02T03:04:05+00:00", "parameters": parameters,
                                "exception": bool(error)}  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


@pytest.fixture
def run(tmp_path: Path) -> tuple[Path, Path]:
    out, figures = tmp_path / "results", tmp_path / "figures"
    figures.mkdir(parents=True)
    params = {"profile": "smoke", "weights": None, "seed": 7, "n_images": 2, "figures_dir": str(figures)}
    executed = out / "executed"
    executed_notebook(executed / "01_figure2_resnet50.ipynb", [RANDOM_LINE + "\n",
                      "2 built-in image(s) (chelsea, coffee) | seed 7 | explained class: top prediction\n",
                      f"saved:\n  {figures / 'figure2_resnet50.png'}\n"], duration=27.4, parameters=params)  # fmt: skip
    executed_notebook(executed / "04_figure5_multi_object.ipynb", [RANDOM_LINE + "\n"], duration=3.0, parameters=params,
                      error=("ValueError", "no <boxes> & no luck"))  # fmt: skip
    executed_notebook(executed / "05_table1_faithfulness.ipynb", [
        "exported:\n" + "".join(f"  {figures / name}\n" for name in ("table1_vgg16.csv", "table1_vgg16.md", "table1_vgg16_claims.csv"))
    ], duration=182.1, parameters=params)  # fmt: skip
    Image.new("RGB", (4, 3), "red").save(figures / "figure2_resnet50.png")
    Image.new("RGB", (4, 3), "blue").save(figures / "figure3_vgg16.png")  # stale: no notebook of this run names it
    (figures / "table1_vgg16.csv").write_text(
        'method,Average Drop %,"Average Drop % (paper, VGG16)",N,note\n'
        "Grad-CAM++,3.5,45.5,2,\nGrad++ScoreCAM,5.5,32.6,2,<script>alert(1)</script>\n"
    )
    (figures / "table1_vgg16.md").write_text(
        "RANDOM WEIGHTS (pipeline check only): Table 1 reproduced: vgg16\n\n| table |\n"
    )
    (figures / "table1_vgg16_claims.csv").write_text(
        "claim,verdict,n\nGrad++ScoreCAM is faster than Score-CAM,cannot tell at N = 2,2\n"
    )
    return out, figures


def manifest(out: Path, figures: Path) -> dict:
    return {
        "profile": "smoke", "command": "run_all.sh --profile smoke",
        "parameters": {"profile": "smoke", "weights": None, "model_file": None, "seed": 7, "device": "cpu",
                       "figures_dir": str(figures), "output_dir": str(out)},
        "started": "2026-01-02T03:00:00+00:00", "finished": "2026-01-02T03:05:00+00:00", "wall_seconds": 300.0,
        "status": "failed", "error": "04_figure5_multi_object.ipynb failed in cell 2: ValueError: no <boxes> & no luck",
        "environment": {"versions": {"python": "3.11.9", "torch": "2.99.1-test", "gradscorecam": "0.1.0+gabc.dirty"},
                        "platform": "Linux-test", "cpu_count": 2, "accelerator": "none (CUDA not available)"},
        "notebooks": [
            {"name": "01_figure2_resnet50.ipynb", "status": "ok", "seconds": 28.25, "error": "", "produced": []},
            {"name": "02_figure3_vgg16.ipynb", "status": "not run", "seconds": None, "error": "", "produced": []},
            {"name": "04_figure5_multi_object.ipynb", "status": "failed", "seconds": 3.5,
             "error": "cell 2: ValueError: no <boxes> & no luck", "produced": []},
            {"name": "05_table1_faithfulness.ipynb", "status": "ok", "seconds": 181.75, "error": "", "produced": []},
        ],
    }  # fmt: skip


def test_report_with_a_manifest(run):
    out, figures = run
    report.write_manifest(out, manifest(out, figures))
    index = report.build_report(out)  # the figures folder comes from the manifest
    assert index == out / "report" / "index.html"
    text = index.read_text(encoding="utf-8")
    links = assert_links_resolve(index)
    assert "notebooks/01_figure2_resnet50.html" in links and "files/figure2_resnet50.png" in links
    for page in (out / "report" / "notebooks").glob("*.html"):
        assert_links_resolve(page)
    # provenance from the manifest and the notebooks' own lines
    assert "Made with RANDOM WEIGHTS" in text and "weights random (weights=None, torch seed 0)" in text
    assert "2.99.1-test" in text and "0.1.0+gabc.dirty" in text and "none (CUDA not available)" in text
    assert "<th>seed</th><td>7</td>" in text and "300 s" in text
    # wall time per notebook: the manifest's seconds, rounded
    assert re.search(r"05_table1_faithfulness.ipynb</a></td><td>ok</td><td>[^<]*</td><td>182 s</td>", text)
    assert re.search(r"01_figure2_resnet50.ipynb</a></td><td>ok</td><td>[^<]*</td><td>28 s</td>", text)
    # the failed notebook: status and error text (escaped); the piece it makes: not made
    assert re.search(r"04_figure5_multi_object.ipynb</a></td><td>failed</td>.*no &lt;boxes&gt; &amp; no luck", text)
    assert "Figure 5: <b>not made</b>" in text
    # a selected notebook that was not reached, and a stale Figure 3 not passed off as this run's
    assert re.search(r"02_figure3_vgg16.ipynb \(no executed copy\)</td><td>not run</td>", text)
    assert "Figure 3: <b>not run</b>" in text
    assert "figure3_vgg16.png" not in text and not (out / "report" / "files" / "figure3_vgg16.png").exists()
    assert "Figure 4: <b>not run</b>" in text  # no notebook 03 at all
    # Table 1 and the verdicts: the CSV's numbers, the paper's beside them, the caption, linked to notebook 05
    assert "<td>32.6</td>" in text and "<td>5.5</td>" in text and "Average Drop % (paper, VGG16)" in text
    assert "Table 1 reproduced: vgg16" in text and "cannot tell at N = 2" in text
    assert text.count('made by <a href="notebooks/05_table1_faithfulness.html">') == 2
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "<script>alert" not in text


def test_report_without_a_manifest_says_so_and_reads_papermill(run):
    out, figures = run
    index = report.build_report(out)  # figures folder: papermill's injected parameter
    text = index.read_text(encoding="utf-8")
    assert_links_resolve(index)
    assert "No run manifest (run.json)" in text and "files/figure2_resnet50.png" in text
    assert re.search(
        r"05_table1_faithfulness.ipynb</a></td><td>ok</td><td>2026-01-02T03:04:05\+00:00</td><td>182 s", text
    )
    assert re.search(
        r"04_figure5_multi_object.ipynb</a></td><td>failed</td>.*cell 2: ValueError: no &lt;boxes&gt;", text
    )
    assert "Made with RANDOM WEIGHTS" in text


def test_only_table1_run_says_the_figures_were_not_run(tmp_path, run):
    out, figures = run
    for name in ("01_figure2_resnet50.ipynb", "04_figure5_multi_object.ipynb"):
        (out / "executed" / name).unlink()
    text = report.build_report(out, figures).read_text(encoding="utf-8")
    for figure in ("Figure 2", "Figure 3", "Figure 4", "Figure 5"):
        assert f"{figure}: <b>not run</b>" in text
    assert "<td>32.6</td>" in text


def test_odd_names_are_escaped_and_linked(run):
    out, figures = run
    odd = out / "executed" / '01_figure2 <b>&"x".ipynb'
    (out / "executed" / "01_figure2_resnet50.ipynb").rename(odd)
    index = report.build_report(out, figures)
    text = index.read_text(encoding="utf-8")
    assert "01_figure2 &lt;b&gt;&amp;&quot;x&quot;.ipynb" in text and "<b>&" not in text
    assert "notebooks/01_figure2%20%3Cb%3E%26%22x%22.html" in assert_links_resolve(index)


def test_an_earlier_report_is_replaced_and_a_folder_without_a_run_is_refused(run, tmp_path):
    out, figures = run
    report.build_report(out, figures)
    assert (out / "report" / report.REPORT_MARKER).is_file()
    (out / "report" / "notebooks" / "99_gone.html").write_text("old")
    report.build_report(out, figures)
    assert not (out / "report" / "notebooks" / "99_gone.html").exists()
    assert (out / "report" / "notebooks" / "05_table1_faithfulness.html").is_file()
    assert sorted(p.name for p in out.iterdir()) == ["executed", "report"]  # no building/replaced folder left
    (out / "report" / report.REPORT_MARKER).unlink()  # a report made before the marker: recognised by its files
    (out / "report" / "notebooks" / "99_gone.html").write_text("old")
    report.build_report(out, figures)
    assert not (out / "report" / "notebooks" / "99_gone.html").exists()
    with pytest.raises(report.ReportError, match="no executed notebooks .* Pass the folder run_all.sh wrote"):
        report.build_report(tmp_path / "empty")
    assert report.main(["--out", str(tmp_path / "empty")]) == 1
    assert report.main(["--out", str(out), "--figures", str(figures)]) == 0


def test_the_pipeline_writes_the_manifest_and_report_after_a_failure(tmp_path, capsys):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    for name, source in (("01_fine.ipynb", "x = 1"), ("02_broken.ipynb", "raise ValueError('broken <here>')"),
                         ("03_after.ipynb", "y = 2")):  # fmt: skip
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(source)]
        nbformat.write(nb, folder / name)
    out = tmp_path / "out"
    code = pipeline.main(["run", "--profile", "smoke", "--notebooks-dir", str(folder), "--out", str(out),
                          "--figures", str(tmp_path / "fig")])  # fmt: skip
    assert code == 1
    written = json.loads((out / "run.json").read_text())
    assert [(n["name"], n["status"]) for n in written["notebooks"]] == [
        ("01_fine.ipynb", "ok"), ("02_broken.ipynb", "failed"), ("03_after.ipynb", "not run")]  # fmt: skip
    assert written["notebooks"][1]["error"] == "cell 1: ValueError: broken <here>"
    assert written["status"] == "failed" and written["parameters"]["weights"] is None
    assert written["environment"]["versions"]["gradscorecam"]
    text = (out / "report" / "index.html").read_text(encoding="utf-8")
    assert "This run FAILED" in text and "ValueError: broken &lt;here&gt;" in text
    assert re.search(r"03_after.ipynb \(no executed copy\)</td><td>not run</td>", text)
    assert "Report: " in capsys.readouterr().out


EARLIER = '<h2 id="earlier">From an earlier run (its own provenance is not this run\'s)</h2>'


def test_an_older_executed_copy_of_a_notebook_this_run_did_not_reach(run):
    out, figures = run
    written = manifest(out, figures)
    written["notebooks"][3].update(status="not run", seconds=None)  # 05 not reached; its copy is an earlier run's
    report.write_manifest(out, written)
    text = report.build_report(out).read_text(encoding="utf-8")
    this_run, earlier = text.split(EARLIER)
    assert re.search(r"05_table1_faithfulness.ipynb \(no executed copy\)</td><td>not run</td>", this_run)
    assert "Table 1: <b>not run</b>" in this_run and "<td>32.6</td>" not in text
    assert "table1_vgg16.csv" not in this_run
    # below, apart: its own status and time (papermill's), and the files it named
    assert re.search(r'<a href="notebooks/05_table1_faithfulness.html">05_table1_faithfulness.ipynb</a></td><td>ok</td>'
                     r"<td>2026-01-02T03:04:05\+00:00</td><td>182 s</td>", earlier)  # fmt: skip
    assert 'href="files/table1_vgg16.csv">table1_vgg16.csv</a> — named by <a href="notebooks/05_table1' in earlier


def test_a_subset_run_shows_the_other_notebooks_copies_only_as_an_earlier_runs(run):
    """``--notebooks 05`` after a full run: 01's Figure 2 and its provenance lines are not this run's."""
    out, figures = run
    written = manifest(out, figures)
    written["notebooks"] = [written["notebooks"][3]]
    written.update(status="ok", error="")
    report.write_manifest(out, written)
    text = report.build_report(out).read_text(encoding="utf-8")
    assert_links_resolve(out / "report" / "index.html")
    this_run, earlier = text.split(EARLIER)
    assert "2 executed notebook(s) in <code>executed/</code> are an earlier run's" in this_run
    assert "01_figure2" not in this_run and "04_figure5" not in this_run and "figure2_resnet50.png" not in this_run
    assert "Figure 2: <b>not run</b> (no notebook of this run makes it). An earlier run's copy" in this_run
    assert "<td>32.6</td>" in this_run  # 05 is this run's
    assert "weights random (weights=None, torch seed 0)" in earlier  # 01's and 04's own provenance lines
    assert re.search(r'figure2_resnet50.png</a><br><img [^>]*> — named by <a href="notebooks/01_figure2_resnet50.html">'
                     r"01_figure2_resnet50.ipynb</a>, started 2026-01-02T03:04:05\+00:00", earlier)  # fmt: skip
    assert re.search(r"04_figure5_multi_object.ipynb</a></td><td>failed</td>", earlier)
    assert "figure3_vgg16.png" not in text  # named by no notebook at all


def test_a_report_folder_it_did_not_make_is_refused_and_left_untouched(run, tmp_path, capsys):
    out, figures = run
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    with pytest.raises(report.ReportError, match=r"mine: not empty, and no report made it .* --report-dir DIR"):
        report.build_report(out, figures, report_dir=mine)
    assert report.main(["--out", str(out), "--figures", str(figures), "--report-dir", str(mine)]) == 1
    assert "left untouched" in capsys.readouterr().err
    assert [p.name for p in mine.iterdir()] == ["thesis.tex"] and (mine / "thesis.tex").read_text() == "years of work"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figures", "mine", "results"]  # nothing half-built left
    (out / "report").mkdir()
    (out / "report" / "notes.txt").write_text("mine")  # the default folder, but not a report's
    with pytest.raises(report.ReportError, match="no report made it"):
        report.build_report(out, figures)
    assert (out / "report" / "notes.txt").read_text() == "mine"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert report.build_report(out, figures, report_dir=empty) == empty / "index.html"  # an empty folder is fine
    assert (empty / report.REPORT_MARKER).is_file()


def test_random_weights_from_a_model_file_are_named(run):
    """A model file whose build_model() returns an untrained network: the parameters name a model file, the
    notebooks printed RANDOM WEIGHTS; the banner follows what the notebooks printed."""
    out, figures = run
    written = manifest(out, figures)
    written["parameters"].update(model_file="/models/untrained.py")
    report.write_manifest(out, written)
    assert "Made with RANDOM WEIGHTS" in report.build_report(out).read_text(encoding="utf-8")
    for copy in (out / "executed").glob("*.ipynb"):  # a trained model file: no notebook prints it
        copy.write_text(copy.read_text(encoding="utf-8").replace("RANDOM WEIGHTS (pipeline check only): ", ""))
    assert "Made with RANDOM WEIGHTS" not in report.build_report(out).read_text(encoding="utf-8")


def test_an_unreadable_notebook_table_or_manifest_does_not_stop_the_report(run):
    out, figures = run
    copy = out / "executed" / "01_figure2_resnet50.ipynb"
    copy.write_text(copy.read_text(encoding="utf-8")[:200])  # truncated, e.g. by a full disk
    (figures / "table1_vgg16_claims.csv").write_text('claim,verdict\n"a,b,c\nx,y,z,w\n')
    (out / report.MANIFEST_NAME).write_text('{"profile": "smoke", ')
    text = report.build_report(out, figures).read_text(encoding="utf-8")
    assert re.search(r"01_figure2_resnet50.ipynb \(could not be rendered\)</td><td>unreadable</td><td>—</td><td>—</td>"
                     r"<td><pre>unreadable: \w+: ", text)  # fmt: skip
    assert "table1_vgg16_claims.csv: <b>unreadable</b>: ParserError: " in text
    assert "<td>32.6</td>" in text  # the readable Table 1 is still there
    assert "The run manifest (run.json) is unreadable (JSONDecodeError: " in text


def test_the_figures_folder_must_be_known_and_exist(run, tmp_path):
    out, figures = run
    with pytest.raises(report.ReportError, match=r"--figures .*nowhere: no such folder.*--figures DIR"):
        report.build_report(out, tmp_path / "nowhere")
    assert report.main(["--out", str(out), "--figures", str(tmp_path / "nowhere")]) == 1
    written = manifest(out, figures)
    written["parameters"]["figures_dir"] = str(tmp_path / "moved")  # the run's folder is gone (or never made)
    report.write_manifest(out, written)
    text = report.build_report(out).read_text(encoding="utf-8")
    assert f"The run&#x27;s figures folder {tmp_path / 'moved'} does not exist" in text and "--figures DIR" in text
    for copy in (out / "executed").glob("*.ipynb"):  # no folder named anywhere
        copy.write_text(re.sub(r'"figures_dir": "[^"]*"', '"seed": 7', copy.read_text(encoding="utf-8")))
    (out / report.MANIFEST_NAME).unlink()
    with pytest.raises(report.ReportError, match=r"figures folder is unknown .* Pass it with --figures DIR"):
        report.build_report(out)


def test_an_earlier_manifest_is_kept_under_its_start(tmp_path):
    first = {"profile": "paper", "started": "2026-01-02T03:00:00+00:00", "status": "ok"}
    report.write_manifest(tmp_path, first)
    report.write_manifest(tmp_path, {**first, "started": "2026-01-05T10:20:30+00:00", "status": "failed"})
    report.write_manifest(tmp_path, {**first, "started": "2026-01-06T00:00:00+00:00"})
    report.write_manifest(tmp_path, {**first, "started": "2026-01-06T00:00:00+00:00", "status": "failed"})
    kept = {p.name: json.loads(p.read_text())["started"] for p in tmp_path.iterdir()}
    assert kept == {
        "run.20260102T030000Z.json": "2026-01-02T03:00:00+00:00",
        "run.20260105T102030Z.json": "2026-01-05T10:20:30+00:00",
        "run.20260106T000000Z.json": "2026-01-06T00:00:00+00:00",
        "run.json": "2026-01-06T00:00:00+00:00",
    }
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "failed"
    report.write_manifest(tmp_path, first)  # the same start once more: a free name, never an overwrite
    assert (tmp_path / "run.20260106T000000Z-2.json").is_file()


def test_a_file_the_manifest_lists_counts_though_no_output_names_it(run):
    out, figures = run
    (figures / "figure5_verdicts_alexnet.csv").write_text("baseline,metric,p_value\nScore-CAM,found,0.25\n")
    written = manifest(out, figures)
    assert report.build_report(out, figures).read_text(encoding="utf-8").count("figure5_verdicts_alexnet.csv") == 0
    written["notebooks"][3]["produced"] = [str(figures / "figure5_verdicts_alexnet.csv")]  # written by 05, silently
    report.write_manifest(out, written)
    text = report.build_report(out).read_text(encoding="utf-8")
    assert re.search(
        r'href="files/figure5_verdicts_alexnet.csv">figure5_verdicts_alexnet.csv</a> — made by <a '
        r'href="notebooks/05_table1_faithfulness.html">',
        text,
    )


def _notebooks(folder: Path, *names: str) -> Path:
    folder.mkdir()
    for name in names:
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell("x = 1")]
        nbformat.write(nb, folder / name)
    return folder


@pytest.fixture
def no_kernel(monkeypatch):
    """papermill replaced by a stand-in that runs nothing (calls are listed), so the pipeline's bookkeeping is
    tested without starting kernels."""
    import papermill

    calls: list[str] = []
    monkeypatch.setattr(pipeline, "ensure_kernel", lambda: "python3")
    monkeypatch.setattr(papermill, "execute_notebook", lambda source, *args, **kwargs: calls.append(Path(source).name))
    return calls


def test_a_shard_writes_its_own_manifest_and_no_report(tmp_path, no_kernel, capsys):
    folder = _notebooks(tmp_path / "notebooks", "05_table1.ipynb")
    out = tmp_path / "out"
    (out / "report").mkdir(parents=True)
    (out / "report" / "index.html").write_text("the full run's report")
    report.write_manifest(out, {"profile": "paper", "started": "2026-01-02T03:00:00+00:00"})
    for shard in (0, 1):
        assert pipeline.main(["run", "--profile", "smoke", "--notebooks-dir", str(folder), "--out", str(out),
                              "--figures", str(tmp_path / "fig"), "--shard-index", str(shard), "--num-shards", "2"]) == 0  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == ["executed", "report", "run.json", "run.shard-0-of-2.json",
                                                      "run.shard-1-of-2.json"]  # fmt: skip
    assert json.loads((out / "run.json").read_text())["profile"] == "paper"  # the full run's, untouched
    shard = json.loads((out / "run.shard-1-of-2.json").read_text())
    assert shard["parameters"]["shard_index"] == 1 and shard["notebooks"][0]["status"] == "ok"
    assert (out / "report" / "index.html").read_text() == "the full run's report"
    assert "No report for a shard" in capsys.readouterr().out


@pytest.mark.parametrize(
    "crash, recorded",
    [(KeyboardInterrupt(), "interrupted (Ctrl-C)"),
     (OSError(28, "No space left on device"), "OSError: [Errno 28] No space left on device")],
)  # fmt: skip
def test_a_crash_or_ctrl_c_is_recorded_as_itself_then_raised(tmp_path, no_kernel, monkeypatch, crash, recorded):
    """Ctrl-C inside notebook 02, or an error of the pipeline's own outside papermill (listing the files before
    notebook 02, the third listing, when the disk is full): recorded as what it was, then raised on."""
    import papermill

    folder = _notebooks(tmp_path / "notebooks", "01_fine.ipynb", "02_stopped.ipynb", "03_after.ipynb")

    def execute(source: str, *args: object, **kwargs: object) -> None:
        if Path(source).name == "02_stopped.ipynb" and isinstance(crash, KeyboardInterrupt):
            raise crash

    listings, real_snapshot = [], pipeline._snapshot

    def snapshot(folders):
        listings.append(folders)
        if len(listings) == 3 and not isinstance(crash, KeyboardInterrupt):
            raise crash
        return real_snapshot(folders)

    monkeypatch.setattr(papermill, "execute_notebook", execute)
    monkeypatch.setattr(pipeline, "_snapshot", snapshot)
    out = tmp_path / "out"
    with pytest.raises(type(crash)):
        pipeline.main(["run", "--profile", "smoke", "--notebooks-dir", str(folder), "--out", str(out),
                       "--figures", str(tmp_path / "fig")])  # fmt: skip
    written = json.loads((out / "run.json").read_text())
    assert written["status"] == "failed" and written["error"] == recorded
    assert [(n["name"], n["status"], n["error"]) for n in written["notebooks"]] == [
        ("01_fine.ipynb", "ok", ""), ("02_stopped.ipynb", "did not finish", recorded), ("03_after.ipynb", "not run", "")
    ]  # fmt: skip
    assert written["notebooks"][1]["seconds"] is None  # not known: the placeholder written when it started
    assert recorded in (out / "report" / "index.html").read_text(encoding="utf-8")


def test_a_crash_between_notebooks_is_recorded_on_the_notebook_it_stopped(tmp_path, no_kernel, monkeypatch):
    """Not papermill's: reading the second notebook's parameters cell fails (it is not a notebook at all)."""
    folder = _notebooks(tmp_path / "notebooks", "01_fine.ipynb")
    (folder / "02_broken.ipynb").write_text('{"cells": [')
    out = tmp_path / "out"
    with pytest.raises(Exception) as raised:
        pipeline.main(["run", "--profile", "smoke", "--notebooks-dir", str(folder), "--out", str(out),
                       "--figures", str(tmp_path / "fig")])  # fmt: skip
    written = json.loads((out / "run.json").read_text())
    recorded = f"{type(raised.value).__name__}: {raised.value}"
    assert written["error"] == recorded and written["status"] == "failed"
    assert [(n["name"], n["status"], n["error"]) for n in written["notebooks"]] == [
        ("01_fine.ipynb", "ok", ""), ("02_broken.ipynb", "did not finish", recorded)]  # fmt: skip
    assert no_kernel == ["01_fine.ipynb"]
