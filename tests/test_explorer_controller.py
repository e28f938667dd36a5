"""The explorer's computation controller, driven directly, without ipywidgets.

Start, stop mid-way, cancel (supersede), collect, errors: every synchronisation is an event, nothing waits
for a time to pass, and the maps collected are checked against direct explainer calls on the same input.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import small_gap_net, small_vgg_net, tiny_spec
from PIL import Image

from gradscorecam import CAM, GradCAM, ScoreCAM
from gradscorecam.explorer import Session
from gradscorecam.explorer.controller import ComputeController, RunReport

pytestmark = pytest.mark.usefixtures("one_thread")
WAIT = 60  # seconds an event may take to arrive before the test fails (never reached when all is well)


def picture(seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (16, 16, 3), dtype=np.uint8))


def make_session(model=None, layer: str = "layer", batch_size: int = 1) -> Session:
    """A session on a tiny network with two pictures selected and ready (model, layer, image, class)."""
    net = model if model is not None else small_gap_net()
    session = Session({"tiny": lambda: tiny_spec(net, layer)}, {"a": lambda: picture(1), "b": lambda: picture(2)},
                      batch_size=batch_size)  # fmt: skip
    session.select_image("a")
    session.select_model("tiny")
    assert session.ready
    return session


def direct(session: Session, method, layer: str | None = None, **options) -> torch.Tensor:
    """The map the library gives for the session's current selection, called directly."""
    return method(session.spec.model, layer or session.layer, **options)(session.inputs, session.target)[0]


class Recorder:
    """The view's side: what the controller called back with, and in which thread."""

    def __init__(self) -> None:
        self.started: list[tuple[str, ...]] = []
        self.progress: list[tuple[str, int, int]] = []
        self.done: list[RunReport] = []
        self.done_threads: list[str] = []

    def attach(self, controller: ComputeController) -> ComputeController:
        controller.on_start = lambda report: self.started.append(report.names)
        controller.on_progress = lambda name, done, total: self.progress.append((name, done, total))
        controller.on_done = self.finished
        return controller

    def finished(self, report: RunReport) -> None:
        self.done.append(report)
        self.done_threads.append(threading.current_thread().name)


@pytest.mark.parametrize("background", [False, True])
def test_a_run_collects_the_maps_a_direct_call_gives(background):
    session = make_session()
    view = Recorder()
    controller = view.attach(ComputeController(session, background=background))
    report = controller.start(["Grad-CAM", "Score-CAM"])
    assert report.finished.wait(WAIT) and controller.wait(WAIT)
    assert report.complete and report.stopped is None and not report.errors and not report.failures
    torch.testing.assert_close(report.results["Grad-CAM"].saliency, direct(session, GradCAM))
    torch.testing.assert_close(report.results["Score-CAM"].saliency, direct(session, ScoreCAM, batch_size=1))
    # collected into the session's cache under the keys of the selection it ran for
    assert report.keys == {name: session.key(name) for name in ("Grad-CAM", "Score-CAM")}
    assert session.cached("Score-CAM") is report.results["Score-CAM"] and session.explainer_calls == 2
    # the view was told: once at the start, each masked image of Score-CAM, once at the end
    assert view.started == [("Grad-CAM", "Score-CAM")] and view.done == [report] and controller.last is report
    scored = int(ScoreCAM(session.spec.model, "layer").explain(session.inputs, session.target).details["scored"].sum())
    assert scored == report.results["Score-CAM"].channels_scored == 11  # of 12: one channel's map is constant
    assert [p for p in view.progress if p[0] == "Score-CAM"][-1] == ("Score-CAM", 11, 11)
    assert {name for name, _, _ in view.progress} == {"Score-CAM"}  # gradient methods make no masked passes
    assert (view.done_threads[0] == "explorer-compute") is background  # the worker thread draws in the background
    assert controller.running == () and not controller.stop_requested.is_set()


def test_stop_mid_way_keeps_nothing_half_done_and_the_controller_works_on():
    session = make_session()
    model = session.spec.model
    view = Recorder()
    controller = view.attach(ComputeController(session, background=True))

    def progress(name: str, done: int, total: int) -> None:
        view.progress.append((name, done, total))
        if done == 3:  # the Stop button, pressed while the third masked image was being scored
            controller.stop()

    controller.on_progress = progress
    report = controller.start(["Score-CAM", "Grad-CAM"])
    assert report.finished.wait(WAIT)
    assert (report.stopped, report.reason, report.not_run) == ("Score-CAM", "stop", ("Score-CAM", "Grad-CAM"))
    assert view.progress[-1] == ("Score-CAM", 3, 11)  # stopped at the next report: 8 masked images never scored
    assert report.results == {} and not report.complete and view.done == [report]
    assert session.cached("Score-CAM") is None and session.cached("Grad-CAM") is None
    assert not model.training and all(p.requires_grad for p in model.parameters())  # the model as it was
    # a new run starts clean and gives the full map
    controller.on_progress = None
    again = controller.start(["Score-CAM"])
    assert again.finished.wait(WAIT) and again.complete
    torch.testing.assert_close(again.results["Score-CAM"].saliency, direct(session, ScoreCAM, batch_size=1))


def test_a_new_start_supersedes_the_running_computation():
    session = make_session()
    view = Recorder()
    controller = view.attach(ComputeController(session, background=True))
    reached = threading.Event()

    def progress(name: str, done: int, total: int) -> None:
        view.progress.append((name, done, total))
        if len(view.done) == 0:  # the first run: hold it at its first report until a stop is requested
            reached.set()
            controller.stop_requested.wait(WAIT)

    controller.on_progress = progress
    first = controller.start(["Score-CAM"])
    assert reached.wait(WAIT) and controller.running == ("Score-CAM",)
    controller.cancel()  # what a widget does: cancel, change the selection, start again
    session.select_layer("block")
    assert first.finished.is_set() and (first.stopped, first.reason) == ("Score-CAM", "superseded")
    assert controller.running == () and not controller.stop_requested.is_set()
    second = controller.start(["Score-CAM", "Grad-CAM"])
    assert second.finished.wait(WAIT) and second.complete and view.done == [first, second]
    torch.testing.assert_close(second.results["Score-CAM"].saliency, direct(session, ScoreCAM, batch_size=1))
    torch.testing.assert_close(second.results["Grad-CAM"].saliency, direct(session, GradCAM))
    assert first.keys["Score-CAM"].layer == "layer" and second.keys["Score-CAM"].layer == "block"
    assert session.results.get(first.keys["Score-CAM"]) is None  # the superseded map was never cached


def test_errors_are_reported_and_the_next_methods_still_run(monkeypatch):
    session = make_session(small_vgg_net(), layer="features")
    real_compute = session.compute

    def compute(name, **kwargs):
        if name == "Grad-CAM++":
            raise RuntimeError("boom: an unexpected failure inside the computation")
        return real_compute(name, **kwargs)

    monkeypatch.setattr(session, "compute", compute)
    view = Recorder()
    controller = view.attach(ComputeController(session, background=True))
    report = controller.start(["CAM", "Grad-CAM++", "Grad-CAM"])
    assert report.finished.wait(WAIT) and report.complete
    # a failure the library diagnoses: its message, remembered for this key so it is not run again
    assert "CAM is not defined" in report.errors["CAM"]
    assert controller.error_for(report.keys["CAM"]) == report.errors["CAM"]
    with pytest.raises(Exception, match="CAM is not defined"):
        direct(session, CAM)  # the same refusal the library gives when called directly
    # an unexpected one: its type, message and traceback, not remembered (a retry may work)
    assert report.failures == {"Grad-CAM++": "RuntimeError: boom: an unexpected failure inside the computation"}
    assert "RuntimeError" in report.tracebacks["Grad-CAM++"] and controller.error_for(report.keys["Grad-CAM++"]) is None
    # and the method after them ran
    torch.testing.assert_close(report.results["Grad-CAM"].saliency, direct(session, GradCAM))
    assert view.done == [report] and controller.running == ()


def test_an_error_in_the_views_callback_is_kept_not_lost_in_the_thread():
    session = make_session()
    controller = ComputeController(session, background=True)

    def broken_view(report: RunReport) -> None:
        raise ValueError("the drawing failed")

    controller.on_done = broken_view
    report = controller.start(["Grad-CAM"])
    assert report.finished.wait(WAIT) and controller.wait(WAIT)
    assert "ValueError: the drawing failed" in report.callback_error
    torch.testing.assert_close(report.results["Grad-CAM"].saliency, direct(session, GradCAM))


def test_a_kernel_interrupt_in_the_callers_thread_is_a_stop():
    session = make_session()
    controller = ComputeController(session, background=False)

    def interrupt(name: str, done: int, total: int) -> None:
        if done == 2:
            raise KeyboardInterrupt  # what the kernel's ■ button raises in the computing thread

    controller.on_progress = interrupt
    report = controller.start(["Score-CAM"])
    assert (report.stopped, report.reason, report.results) == ("Score-CAM", "interrupt", {})
    assert session.cached("Score-CAM") is None and report.finished.is_set()


def test_the_controller_runs_without_ipywidgets(tmp_path):
    """Everything but the view imports and computes with ipywidgets missing (only :class:`Explorer` needs it)."""
    script = """
import sys
sys.modules["ipywidgets"] = None  # an import of ipywidgets now fails
from conftest import small_gap_net, tiny_spec
from PIL import Image
from gradscorecam.explorer import ComputeController, Session
session = Session({"tiny": lambda: tiny_spec(small_gap_net(), "layer")}, {"grey": lambda: Image.new("RGB", (16, 16), 128)})
session.select_image("grey")
session.select_model("tiny")
report = ComputeController(session).start(["Grad-CAM"])
assert report.complete and report.results["Grad-CAM"].saliency.shape == (16, 16)
try:
    from gradscorecam.explorer import Explorer
except ImportError as error:
    print("view needs ipywidgets:", error)
"""
    tests = Path(__file__).resolve().parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tests.parent / "lib"), str(tests)]), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "view needs ipywidgets" in done.stdout
