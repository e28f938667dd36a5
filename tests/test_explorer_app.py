"""The explorer as a web app: ``python -m gradscorecam.explorer.app`` (``./run_all.sh explore``) in a real browser.

Each end-to-end test starts the app as a user does (a subprocess, on a free port, ``--no-browser``), opens the
address it prints (with its access token) in headless Chromium (Debian's ``chromium``, driven by the ``playwright`` package; no browser download),
works the widgets, then stops the server with SIGTERM and checks that the server and every kernel it started
are gone. The model is a small CNN with fixed random weights written as a model file (the ``build_model()``
contract), the images the built-in photographs, so nothing is downloaded. Marked ``app``:
``./run_tests.sh -m app`` runs only these; CI installs chromium (``.ci/run``) so they run there.

The checks that need no browser (argument errors, the port probe, the token handed to Voila, the cells the app
leaves out, the environment handed to the notebook) run everywhere.
"""

from __future__ import annotations

import errno
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest

from gradscorecam.explorer import app

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / app.NOTEBOOK_NAME
# Debian's chromium first; google-chrome is what GitHub's Ubuntu runners have preinstalled
CHROMIUM = os.environ.get("CHROMIUM") or next(
    filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None
)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
NO_CHROMIUM = (
    "needs Chromium to open the app's page: on Debian/Ubuntu `apt-get install chromium` (CI's .ci/run does), or set "
    "CHROMIUM to a Chromium/Chrome executable"
)

TINY_MODEL = """
import torch
from torch import nn
from torchvision import transforms as T

def build_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3)).eval()
    transform = T.Compose([T.Resize(32), T.CenterCrop(32), T.ToTensor(), T.Normalize([0.5] * 3, [0.2] * 3)])
    return dict(model=model, transform=transform, target_layer="2", categories=["alpha", "beta", "gamma"],
                mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2), name="tiny test CNN")
"""


# ------------------------------------------------------------------------------------------ without a browser
def test_app_leaves_out_the_cells_tagged_not_in_app_and_runs_this_interpreters_kernel():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    kept = app.app_notebook(nbformat.read(NOTEBOOK, as_version=4), "gradscorecam").cells
    # the intro, the parameters and the explorer cell; not the cells that set a view from code (explorer.wait())
    assert [c.source for c in kept] == [c.source for c in notebook.cells[:3]]
    assert sum(app.APP_EXCLUDE_TAG in c.metadata.get("tags", []) for c in notebook.cells) == len(notebook.cells) - 3
    assert not any("explorer.wait()" in c.source for c in kept) and kept[2].source.rstrip().endswith("explorer")
    patched = app.app_notebook(nbformat.read(NOTEBOOK, as_version=4), "gradscorecam")
    assert patched.metadata["kernelspec"]["name"] == "gradscorecam"


def test_the_notebooks_parameters_read_the_apps_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Run the parameters cell as the app's kernel does; papermill's injected cell comes after it and wins."""
    model_file = tmp_path / "tiny.py"
    model_file.write_text(TINY_MODEL)
    env = app.notebook_environment(str(model_file), "builtin", "cpu", random_weights=True)
    assert env == {"GRADSCORECAM_MODEL_FILE": str(model_file.resolve()), "GRADSCORECAM_DEVICE": "cpu",
                   "GRADSCORECAM_WEIGHTS": "random"}  # fmt: skip
    parameters = nbformat.read(NOTEBOOK, as_version=4).cells[1].source
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    namespace: dict[str, object] = {}
    exec(parameters, namespace)
    assert namespace["model_file"] == str(model_file.resolve()) and namespace["weights"] is None
    assert namespace["image_source"] == "builtin" and namespace["device"] == "cpu"
    for key in env:
        monkeypatch.delenv(key)
    exec(parameters, namespace)
    assert namespace["model_file"] is None and namespace["weights"] == "DEFAULT" and namespace["device"] == "cpu"
    # options not given are removed from what the kernels inherit, PYTHONPATH starts with the checkout's lib/
    inherited = app.kernel_env(
        {"GRADSCORECAM_IMAGES": "/stale", "PYTHONPATH": "/x"}, {"GRADSCORECAM_DEVICE": "cpu"}, ROOT
    )
    assert "GRADSCORECAM_IMAGES" not in inherited and inherited["GRADSCORECAM_DEVICE"] == "cpu"
    assert inherited["PYTHONPATH"] == os.pathsep.join([str(ROOT / "lib"), "/x"])
    # a run_all.sh run removes the same variables from its environment (tests/test_pipeline.py)
    from gradscorecam.pipeline import APP_ENVIRONMENT

    assert APP_ENVIRONMENT == tuple(app.ENVIRONMENT.values())


def test_the_notebook_refuses_an_unknown_weights_value(monkeypatch: pytest.MonkeyPatch):
    """A typo in GRADSCORECAM_WEIGHTS (e.g. set in a JupyterHub spawner) stops the notebook instead of meaning
    pretrained weights; the check is in the cell after the parameters cell, which papermill parses."""
    cells = nbformat.read(NOTEBOOK, as_version=4).cells
    check = cells[2].source.split('if device == "auto"')[0]  # the imports and the check, not the explorer
    assert "GRADSCORECAM_WEIGHTS" in check
    namespace: dict[str, object] = {}
    monkeypatch.setenv("GRADSCORECAM_WEIGHTS", "randon")
    exec(cells[1].source, namespace)
    with pytest.raises(ValueError, match=r"GRADSCORECAM_WEIGHTS='randon' is not understood.*'random'.*unset it"):
        exec(check, namespace)
    monkeypatch.setenv("GRADSCORECAM_WEIGHTS", "random")
    exec(cells[1].source, namespace)
    exec(check, namespace)
    assert namespace["weights"] is None
    monkeypatch.delenv("GRADSCORECAM_WEIGHTS")
    exec(cells[1].source, namespace)
    exec(check, namespace)
    assert namespace["weights"] == "DEFAULT"


def test_clear_errors_before_any_server_starts(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    here = ["--notebook", str(NOTEBOOK), "--no-browser"]  # wherever pytest runs from
    assert app.main(["--model-file", str(tmp_path / "absent.py"), *here]) == 2
    error = capsys.readouterr().err
    assert "--model-file" in error and "absent.py: no such file" in error
    assert app.main(["--images", str(tmp_path / "nowhere"), *here]) == 2
    assert "--images" in capsys.readouterr().err
    assert app.main(["--notebook", str(tmp_path / "absent.ipynb"), "--no-browser"]) == 2
    assert "--notebook" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert app.main(["--port", str(port), *here]) == 2
        error = capsys.readouterr().err
        assert f"127.0.0.1:{port}" in error and "--port" in error and "in use" in error


def test_port_out_of_range_is_an_argument_error_not_a_traceback(capsys: pytest.CaptureFixture[str]):
    for port, said in (("70000", "70000 is not a port number"), ("0", "0 is not a port number"), ("x", "'x'")):
        with pytest.raises(SystemExit) as exit_:
            app.main(["--port", port, "--notebook", str(NOTEBOOK), "--no-browser"])
        assert exit_.value.code == 2
        error = capsys.readouterr().err
        assert "--port" in error and said in error and "1 to 65535" in error


def test_port_probe_allows_time_wait_and_names_the_address_problems():
    # a connection closed by the server side leaves its port in TIME_WAIT for ~60 s: Tornado (SO_REUSEADDR) can
    # listen there again at once, so the probe must not call it "in use"
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        served, _ = listener.accept()
        served.close()  # the server closes first: its end (127.0.0.1:port) goes to TIME_WAIT
        client.close()
    with socket.socket() as plain, pytest.raises(OSError) as in_time_wait:  # what the old probe saw
        plain.bind(("127.0.0.1", port))
    assert in_time_wait.value.errno == errno.EADDRINUSE
    app.check_port("127.0.0.1", port)  # no error
    with pytest.raises(app.AppError, match=r"^--ip no-such-host\.invalid: not an address this machine can listen on"):
        app.check_port("no-such-host.invalid", port)
    with pytest.raises(app.AppError, match=r"^--ip 192\.0\.2\.1: not an address of this machine"):
        app.check_port("192.0.2.1", port)  # TEST-NET-1 (RFC 5737): never a local address
    assert app.page_url("::1", 8866, "abc") == "http://[::1]:8866/?token=abc"
    assert app.page_url("0.0.0.0", 8866, None) == "http://127.0.0.1:8866/"


def test_port_probe_speaks_ipv6():
    try:
        with socket.socket(socket.AF_INET6) as taken:
            taken.bind(("::1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            with pytest.raises(app.AppError, match=r"cannot listen on ::1:\d+: the port is in use .*http://\[::1\]:"):
                app.check_port("::1", port)
    except OSError as error:
        pytest.skip(f"no IPv6 loopback here ({error})")
    app.check_port("::1", port)  # free again


def test_the_server_gets_a_fresh_token_unless_no_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    """main() as far as Voila: a stand-in records the configuration Voila would start with."""
    import voila.app

    import gradscorecam.pipeline

    started: list[tuple[object, list[str]]] = []

    class FakeVoila:
        def __init__(self, config: object) -> None:
            self.config = config

        def initialize(self, argv: list[str]) -> None:
            started.append((self.config, argv))

        def start(self) -> None:
            pass

    monkeypatch.setattr(voila.app, "Voila", FakeVoila)
    monkeypatch.setattr(gradscorecam.pipeline, "ensure_kernel", lambda: "gradscorecam")
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))  # main() edits the environment: restored
    port = _free_port()
    here = ["--notebook", str(NOTEBOOK), "--no-browser", "--port", str(port)]
    assert app.main(here) == 0 and app.main(here) == 0
    tokens = [config.Voila.token for config, _ in started]  # type: ignore[attr-defined]
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{32}", t) for t in tokens) and tokens[0] != tokens[1]
    assert not any(t in " ".join(argv) for t, (_, argv) in zip(tokens, started, strict=True))  # not on a command line
    printed = capsys.readouterr().out
    assert f"http://127.0.0.1:{port}/?token={tokens[0]}" in printed and f"?token={tokens[1]}" in printed
    assert app.main([*here, "--no-token"]) == 0
    assert "token" not in started[2][0].Voila  # type: ignore[attr-defined]
    assert f"at http://127.0.0.1:{port}/ " in capsys.readouterr().out


def test_missing_voila_names_the_extra(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "voila.app", None)  # import voila.app now raises ImportError
    with pytest.raises(app.AppError, match=r"pip install -e \"\.\[explorer\]\""):
        app.check_voila()


# ---------------------------------------------------------------------------------------------- in a browser
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (``ps``, so it works on Linux and macOS)."""
    table = subprocess.run(["ps", "-eo", "pid=,ppid="], capture_output=True, text=True, check=True).stdout.split()
    children: dict[int, list[int]] = {}
    for child, parent in zip(map(int, table[::2]), map(int, table[1::2]), strict=True):
        children.setdefault(parent, []).append(child)
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True).stdout.strip()[
        :1
    ] not in ("Z", "")


class Served:
    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.process, self.port, self.log = process, port, log
        self.url = ""  # the address the app prints, with its token
        self.kernels: set[int] = set()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator:
    """Start the app with the given options; on exit stop it (SIGTERM) and check nothing it started is left."""
    started: list[Served] = []

    def start(*options: str, env: dict[str, str] | None = None) -> Served:
        port = _free_port()
        log = tmp_path / f"app-{port}.log"
        environment = {
            **os.environ,
            **(env or {}),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "lib"), os.environ.get("PYTHONPATH")])),
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "gradscorecam.explorer.app", "--port", str(port), "--no-browser", *options],
            cwd=ROOT, env=environment, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        served = Served(process, port, log)
        started.append(served)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert process.poll() is None, f"the app exited with {process.returncode}:\n{log.read_text()}"
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    # printed before the server starts: "Serving ... at http://127.0.0.1:PORT/?token=..."
                    address = re.search(rf"at (http://127\.0\.0\.1:{port}/\?token=[\w-]+) ", log.read_text())
                    assert address, f"the app printed no address with a token:\n{log.read_text()}"
                    served.url = address[1]
                    return served
            except OSError:
                time.sleep(0.5)
        raise AssertionError(f"the app did not listen on {port} within 120 s:\n{log.read_text()}")

    yield start
    for served in started:
        below = _descendants(served.process.pid) | served.kernels
        served.process.send_signal(signal.SIGTERM)
        try:
            served.process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(served.process.pid, signal.SIGKILL)
            pytest.fail(f"the app did not stop within 60 s of SIGTERM:\n{served.log.read_text()}")
        deadline = time.monotonic() + 30
        while any(_alive(pid) for pid in below) and time.monotonic() < deadline:
            time.sleep(0.5)
        left = [pid for pid in below if _alive(pid)]
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        assert not left, f"processes left after the app stopped: {left}\n{served.log.read_text()}"


@pytest.fixture
def browser() -> Iterator:
    if CHROMIUM is None:
        pytest.skip(NO_CHROMIUM)
    sync_api = pytest.importorskip("playwright.sync_api", reason='needs playwright: pip install -e ".[test]"')
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


DROPDOWNS = """() => Object.fromEntries([...document.querySelectorAll('.widget-dropdown')].map(d =>
    [d.querySelector('label').textContent, [...d.querySelectorAll('option')].map(o => o.textContent.replace(/\\u00a0/g, ' '))]))"""
MAPS_IMAGE = """() => { const i = [...document.querySelectorAll('img.widget-image')][0];
    return i && i.complete ? [i.src, i.naturalWidth] : null; }"""
TEXT = "() => document.body.innerText"
# The share of strongly coloured pixels in the right half of the maps picture: the map panels (a colour map over
# the photograph) and the colour bar. An empty panel ("not computed", "computing …") is white.
COLOURED = """() => { const i = document.querySelector('img.widget-image');
    if (!i || !i.complete || !i.naturalWidth) return null;
    const c = document.createElement('canvas'); c.width = i.naturalWidth; c.height = i.naturalHeight;
    const g = c.getContext('2d'); g.drawImage(i, 0, 0);
    const d = g.getImageData(Math.floor(c.width / 2), 0, Math.floor(c.width / 2), c.height).data;
    let n = 0;
    for (let k = 0; k < d.length; k += 4) { if (Math.max(d[k], d[k+1], d[k+2]) - Math.min(d[k], d[k+1], d[k+2]) > 60) n++; }
    return n / (d.length / 4); }"""


def _maps_image(page) -> tuple[str, int]:  # type: ignore[no-untyped-def]
    return tuple(page.evaluate(MAPS_IMAGE) or ("", 0))  # type: ignore[return-value]


def _wait_for_change(page, before: tuple[str, int], what: str, timeout: float = 120.0) -> tuple[str, int]:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = _maps_image(page)
        if now[0] and now != before:
            return now
        time.sleep(0.5)
    raise AssertionError(
        f"the maps picture did not change after {what} within {timeout:.0f} s; page:\n{page.evaluate(TEXT)}"
    )


def _wait_until_stable(page, seconds: float = 3.0, timeout: float = 120.0) -> tuple[str, int]:  # type: ignore[no-untyped-def]
    """The maps picture once it has not changed for ``seconds`` (the widgets have settled)."""
    last, since, deadline = _maps_image(page), time.monotonic(), time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = _maps_image(page)
        if now != last:
            last, since = now, time.monotonic()
        elif now[0] and time.monotonic() - since >= seconds:
            return now
    raise AssertionError(f"the maps picture did not settle within {timeout:.0f} s")


def _assert_no_error(page) -> None:  # type: ignore[no-untyped-def]
    text = page.evaluate(TEXT)
    for sign in ("Traceback", "There was an error when executing cell", "unexpected error", "An exception occurred"):
        assert sign not in text, f"{sign!r} on the page:\n{text}"


@pytest.mark.app
def test_app_serves_the_explorer_and_grad_cam_draws_a_map(serve, browser, tmp_path: Path):  # type: ignore[no-untyped-def]
    model_file = tmp_path / "tiny_model.py"
    model_file.write_text(textwrap.dedent(TINY_MODEL))
    served = serve("--model-file", str(model_file))
    # without the token the server sends to its login page: no page, no kernel, no kernel API
    for path in ("/", "/api/kernels", "/?token=wrong"):
        connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=60)
        connection.request("GET", path)
        answer = connection.getresponse()
        assert (answer.status, answer.getheader("Location", "").split("?")[0]) == (302, "/login"), path
        connection.close()
    page = browser.new_page(viewport={"width": 1300, "height": 1500})
    page.goto(served.url, timeout=180_000)
    page.wait_for_selector(".widget-dropdown select", timeout=180_000)
    page.wait_for_function(f"() => ({MAPS_IMAGE})() !== null && ({MAPS_IMAGE})()[1] > 0", timeout=120_000)
    served.kernels = _descendants(served.process.pid)
    assert served.kernels, "no kernel was started for the page"

    menus = page.evaluate(DROPDOWNS)
    assert menus["model"] == ["file: tiny_model.py", "resnet50", "vgg16", "alexnet"]
    assert menus["layer"] == ["0   (8×32×32)", "1   (8×32×32)", "2   (8×32×32)", "3   (8×32×32)", "4   (8×1×1)"]
    assert menus["image"][:3] == ["chelsea", "coffee", "rocket"]
    assert len(menus["class"]) == 3 and all(
        name.split(" — ")[0] in ("alpha", "beta", "gamma") for name in menus["class"]
    )
    chosen = page.locator(".widget-dropdown select").nth(1).input_value().replace("\xa0", " ")
    assert chosen == "2   (8×32×32)"  # the model file's target layer
    text = page.evaluate(TEXT)
    assert "CAM explorer" in text and "explorer.wait()" not in text  # widgets, no code; the not-in-app cells left out
    _assert_no_error(page)

    # a new image, no method ticked: the picture shows the input only
    def checkbox(name: str):  # type: ignore[no-untyped-def]
        return page.locator(".widget-checkbox", has_text=re.compile(f"^\u200b?{re.escape(name)}$")).locator("input")

    page.locator(".widget-dropdown select").nth(2).select_option("coffee")
    for name in ("Grad-CAM", "Grad-CAM++"):
        if checkbox(name).is_checked():
            checkbox(name).uncheck()
    input_only = _wait_until_stable(page)
    assert page.locator(".widget-dropdown select").nth(2).input_value() == "coffee"

    blank = page.evaluate(COLOURED)
    assert blank < 0.01, f"{blank:.1%} of the right half is coloured with no method ticked"

    # choose Grad-CAM: it is computed for this image and drawn beside the input
    checkbox("Grad-CAM").check()
    _wait_for_change(page, input_only, "ticking Grad-CAM")
    page.wait_for_function(f"() => ({COLOURED})() > 0.2", timeout=120_000)  # the map, not a "computing …" panel
    page.wait_for_function("() => document.body.innerText.includes('Grad-CAM: Channel weights')", timeout=60_000)
    _assert_no_error(page)
    page.close()


@pytest.mark.app
def test_offline_without_torchvision_weights_the_page_says_what_to_do(serve, browser, tmp_path: Path):  # type: ignore[no-untyped-def]
    torch_home = tmp_path / "torch"
    closed = _free_port()  # nothing listens there: every download fails at once, as offline
    offline = {"TORCH_HOME": str(torch_home), "no_proxy": "", "NO_PROXY": "",
               **{k: f"http://127.0.0.1:{closed}" for k in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")}}  # fmt: skip
    served = serve(env=offline)
    page = browser.new_page(viewport={"width": 1300, "height": 1200})
    page.goto(served.url, timeout=180_000)
    page.wait_for_selector(".widget-dropdown select", timeout=180_000)
    page.wait_for_function("() => document.body.innerText.includes('not cached')", timeout=120_000)
    served.kernels = _descendants(served.process.pid)
    text = page.evaluate(TEXT)
    message = next(line for line in text.splitlines() if "not cached" in line)
    assert "resnet50" in message and ".pth" in message  # which file
    assert str(torch_home / "hub" / "checkpoints") in message  # where to put it
    assert "--model-file" in message and "load model" in message  # or a network whose weights you have
    assert "Traceback" not in text and "There was an error when executing cell" not in text
    page.close()
