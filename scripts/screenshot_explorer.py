"""Take the screenshot of the explorer in a real JupyterLab session, with headless Chromium.

A maintainer's tool, not part of the library or its tests. It needs Chromium (Debian: ``apt-get install
chromium``) and the ``playwright`` Python package (``pip install playwright``; its own browser download is not
needed: the system Chromium is used).

    python scripts/screenshot_explorer.py \\
        --model-file ../shared/models/mobilenet_v2_imagenet/model.py \\
        --labels ../shared/data/imagenet_samples/labels.csv --image n02279972_monarch \\
        --out docs/explorer.png

What it does, so the picture can be trusted: it writes a throw-away notebook in a temporary folder that builds
``Explorer`` on the model file (imported by path, its ``build_model()`` called) and the images of the labels CSV,
starts ``jupyter lab`` there with ``PYTHONPATH`` set to this checkout's ``lib``, opens the notebook in headless
Chromium, runs it with JupyterLab's own "Run All Cells" command, waits until the maps are computed and drawn,
hides the code, and saves a screenshot of the browser window. Nothing is faked or drawn outside JupyterLab.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip

NOTEBOOK_CODE = """\
import csv, importlib.util
from pathlib import Path
from PIL import Image
from gradscorecam.explorer import Explorer, ImageEntry

def load_model_file(path):
    spec = importlib.util.spec_from_file_location("user_model", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_model()

labels = Path({labels!r})
images = {{}}
for row in csv.DictReader(labels.open()):
    path = labels.parent / row["file"]
    images[Path(row["file"]).stem] = ImageEntry(lambda p=path: Image.open(p).convert("RGB"), int(row["class_index"]))
images = {{{image!r}: images.pop({image!r}), **images}}  # the image to show first

explorer = Explorer(
    {{"MobileNetV2 (model file)": lambda: load_model_file({model_file!r})}},
    images,
    initial_methods={methods!r},
    max_channels={max_channels!r},
    warn_seconds={warn_seconds!r},
    opacity=0.5,
    teaching_channels=6,
)
explorer"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_notebook(folder: Path, args: argparse.Namespace, marker: Path) -> Path:
    code = NOTEBOOK_CODE.format(
        labels=str(Path(args.labels).resolve()), image=args.image, model_file=str(Path(args.model_file).resolve()),
        methods=tuple(args.methods), max_channels=args.max_channels, warn_seconds=args.warn_seconds,
    )  # fmt: skip
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell(code),
        nbformat.v4.new_code_cell(f"explorer.wait()\nPath({str(marker)!r}).write_text('drawn')"),
    ]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    path = folder / "explorer.ipynb"
    nbformat.write(notebook, path)
    return path


def start_lab(folder: Path, port: int, token: str) -> subprocess.Popen:
    settings = folder / ".settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO / "lib"), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "JUPYTERLAB_SETTINGS_DIR": str(folder / ".settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(folder / ".workspaces"),
    }
    command = [
        sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={folder}", "--LabApp.expose_app_in_browser=True",
    ]  # fmt: skip
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # containers often run as root; Jupyter refuses without this
        command.append("--allow-root")
    log = (folder / "lab.log").open("w")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2)
            return process
        except OSError:
            time.sleep(1)
    process.terminate()
    raise RuntimeError(f"jupyter lab did not start; see {folder / 'lab.log'}")


def take(args: argparse.Namespace) -> None:
    from playwright.sync_api import sync_playwright

    folder = Path(tempfile.mkdtemp(prefix="explorer-shot-"))
    marker = folder / "drawn.txt"
    notebook = write_notebook(folder, args, marker)
    port, token = free_port(), secrets.token_hex(16)
    lab = start_lab(folder, port, token)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": args.width, "height": args.height})
            page.goto(f"http://127.0.0.1:{port}/lab/tree/{notebook.name}?token={token}")
            page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=120_000)
            page.wait_for_function("() => window.jupyterapp !== undefined", timeout=60_000)
            page.wait_for_selector('.jp-Notebook-ExecutionIndicator[data-status="idle"]', timeout=120_000)
            run_all(page)
            deadline = time.time() + args.timeout
            while not marker.exists():
                if time.time() > deadline:
                    raise TimeoutError(f"the explorer did not finish within {args.timeout} s")
                time.sleep(2)
            page.wait_for_selector('.jp-Notebook-ExecutionIndicator[data-status="idle"]', timeout=60_000)
            page.evaluate("() => window.jupyterapp.commands.execute('notebook:hide-all-cell-code')")
            page.evaluate("() => window.jupyterapp.shell.collapseLeft()")
            page.wait_for_function(  # the maps and the teaching view are drawn and loaded
                "() => [...document.querySelectorAll('.jp-OutputArea img')].filter(i => i.complete && i.naturalWidth > 0).length >= 2",
                timeout=60_000,
            )
            time.sleep(2)
            raw = folder / "raw.png"
            page.screenshot(path=str(raw))
            browser.close()
        save_small_png(raw, Path(args.out), args.max_kb)
    finally:
        lab.terminate()
        try:
            lab.wait(30)
        except subprocess.TimeoutExpired:
            lab.kill()
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            print(f"kept {folder}")


def run_all(page, attempts: int = 4) -> None:  # type: ignore[no-untyped-def]
    """JupyterLab's "Run All Cells"; tried again when no cell starts (a kernel that was not quite connected yet)."""
    started = (
        "() => [...document.querySelectorAll('.jp-InputPrompt')].some(p => /\\[(\\*|\\d+)\\]/.test(p.textContent))"
    )
    for attempt in range(attempts):
        time.sleep(3)
        page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
        try:
            page.wait_for_function(started, timeout=30_000)
            print("cells started", flush=True)
            return
        except Exception:  # playwright's TimeoutError
            print(f"no cell started (attempt {attempt + 1}); trying again", flush=True)
    raise RuntimeError("JupyterLab did not run the notebook's cells")


def save_small_png(raw: Path, out: Path, max_kb: int) -> None:
    """Save the screenshot as PNG; reduce it to a dithered 256-colour palette if it is larger than ``max_kb``."""
    from PIL import Image

    out.parent.mkdir(parents=True, exist_ok=True)
    image = Image.open(raw).convert("RGB")
    image.save(out, optimize=True)
    if out.stat().st_size > max_kb * 1024:  # a 256-colour palette, dithered so that photographs do not band
        palette = image.quantize(colors=256, method=Image.Quantize.MEDIANCUT)
        image.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG).save(out, optimize=True)
    print(f"{out}: {image.width}x{image.height}, {out.stat().st_size // 1024} KB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-file", default=str(REPO.parent / "shared/models/mobilenet_v2_imagenet/model.py"))
    parser.add_argument("--labels", default=str(REPO.parent / "shared/data/imagenet_samples/labels.csv"))
    parser.add_argument("--image", default="n02279972_monarch", help="file stem of the image shown")
    parser.add_argument("--methods", nargs="+", default=["Grad-CAM", "Grad-CAM++", "Score-CAM", "Grad++ScoreCAM"])
    parser.add_argument("--max-channels", type=int, default=None, help="channel budget of the score-based methods")
    parser.add_argument("--warn-seconds", type=float, default=1e9, help="compute without asking (default)")
    parser.add_argument("--out", default=str(REPO / "docs/explorer.png"))
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=1850)
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for the maps")
    parser.add_argument("--max-kb", type=int, default=480)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (notebook, lab.log)")
    take(parser.parse_args())


if __name__ == "__main__":
    main()
