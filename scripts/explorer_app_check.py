"""The explorer web app (``./run_all.sh explore``) in headless Chromium: its screenshot, and its kernels' memory.

A maintainer's tool, not part of the library or its tests. Needs Chromium (Debian: ``apt-get install chromium``)
and the ``playwright`` package (``pip install -e ".[test]"``; no browser download: the system Chromium is used).

    # docs/explorer_app.png: the shared MobileNetV2 model file, the ImageNet sample photographs, the monarch
    python scripts/explorer_app_check.py screenshot \\
        --model-file ../shared/models/mobilenet_v2_imagenet/model.py \\
        --images ../shared/data/imagenet_samples/labels.csv --image images/n02279972_monarch.JPEG \\
        --out docs/explorer_app.png

    # the resident memory (RSS) of one page's kernel after it drew its first maps, per model
    python scripts/explorer_app_check.py memory [--model-file ../shared/models/mobilenet_v2_imagenet/model.py]

Both start the app exactly as a user does (``python -m gradscorecam.explorer.app --no-browser`` on a free port,
this checkout's ``lib`` first on ``PYTHONPATH``), open the address it prints (with its access token), wait until
the maps picture holds a coloured map (the initial methods, Grad-CAM and Grad-CAM++, computed in the page's
kernel), and stop the server with SIGTERM.

``memory`` reads ``VmRSS`` (and the peak, ``VmHWM``) of the page's kernel process from ``/proc`` (Linux) once the
first maps are drawn. The torchvision networks are measured with random weights (``--random-weights``: the same
architectures and parameter counts as the pretrained ones, which cannot be downloaded offline): ResNet-50 as the
app's first model, VGG16 and AlexNet through a generated model file whose ``build_model()`` returns
``gradscorecam.models.load_model(name, weights=None)`` (so each is the only network in its kernel). A last run
selects all three torchvision networks in turn in one page (what a student clicking through them costs: loaded
networks are kept).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
# share of strongly coloured pixels in the right half of the maps picture (map panels and colour bar)
COLOURED = """() => { const i = document.querySelector('img.widget-image');
    if (!i || !i.complete || !i.naturalWidth) return 0;
    const c = document.createElement('canvas'); c.width = i.naturalWidth; c.height = i.naturalHeight;
    const g = c.getContext('2d'); g.drawImage(i, 0, 0);
    const d = g.getImageData(Math.floor(c.width / 2), 0, Math.floor(c.width / 2), c.height).data;
    let n = 0;
    for (let k = 0; k < d.length; k += 4) { if (Math.max(d[k], d[k+1], d[k+2]) - Math.min(d[k], d[k+1], d[k+2]) > 60) n++; }
    return n / (d.length / 4); }"""
MAPS_SRC = "() => (document.querySelector('img.widget-image') || {}).src || ''"
WRAPPER = """from gradscorecam.models import load_model

def build_model():
    spec = load_model({name!r}, weights=None)  # random weights: the architecture and parameter count only
    return dict(model=spec.model, transform=spec.transform, target_layer=spec.target_layer,
                categories=spec.categories, mean=spec.mean, std=spec.std, name=spec.name, is_random=True)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve(*options: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Start the app; yield the address it prints (with its access token) and the server process."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "lib"), os.environ.get("PYTHONPATH")]))}
    descriptor, name = tempfile.mkstemp(prefix="explorer-app-", suffix=".log")
    log = Path(name)
    with os.fdopen(descriptor, "wb") as output:  # the server writes to it; closed here once it has stopped
        process = subprocess.Popen(
            [sys.executable, "-m", "gradscorecam.explorer.app", "--port", str(port), "--no-browser", *options],
            cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            while True:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the app did not start; see {log}")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.5)
            # printed before the server starts: "Serving ... at http://127.0.0.1:PORT/?token=... "
            address = re.search(rf"at (http://127\.0\.0\.1:{port}/\?token=[\w-]+) ", log.read_text())
            if address is None:
                raise RuntimeError(f"the app printed no address with a token; see {log}")
            yield address[1], process
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def kernel_pids(server: int) -> list[int]:
    out = subprocess.run(["ps", "-eo", "pid=,ppid=,args="], capture_output=True, text=True, check=True).stdout
    return [int(line.split()[0]) for line in out.splitlines() if int(line.split()[1]) == server and "ipykernel" in line]


def memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MiB, from /proc/<pid>/status."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def wait_for_maps(page, previous: str = "", timeout: float = 600) -> None:  # type: ignore[no-untyped-def]
    """Until the maps picture is a new one holding a coloured map, and has not changed for 3 s."""
    deadline, last, since = time.monotonic() + timeout, None, time.monotonic()
    while time.monotonic() < deadline:
        src = page.evaluate(MAPS_SRC)
        if src != last:
            last, since = src, time.monotonic()
        elif src and src != previous and time.monotonic() - since > 3 and page.evaluate(COLOURED) > 0.2:
            stop = page.get_by_role("button", name="Stop")
            if not (stop.count() and stop.first.is_visible()):  # no computation running ("computing …" panels)
                return
        button = page.get_by_role("button", name="Compute anyway")
        if button.count() and button.first.is_visible():
            button.first.click()
        time.sleep(0.5)
    raise TimeoutError("the maps were not drawn in time")


def open_page(browser, url: str, width: int, height: int):  # type: ignore[no-untyped-def]
    page = browser.new_page(viewport={"width": width, "height": height})
    page.goto(url, timeout=300_000)
    page.wait_for_selector(".widget-dropdown select", timeout=300_000)
    wait_for_maps(page)
    return page


def select(page, menu: int, value: str) -> None:  # type: ignore[no-untyped-def]
    before = page.evaluate(MAPS_SRC)
    page.locator(".widget-dropdown select").nth(menu).select_option(value)
    wait_for_maps(page, previous=before)


def screenshot(args: argparse.Namespace, browser) -> None:  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(REPO / "scripts"))
    from screenshot_explorer import save_small_png

    with serve("--model-file", args.model_file, "--images", args.images) as (url, _):
        page = open_page(browser, url, args.width, args.height)
        select(page, 2, args.image)
        for name in args.tick:
            before = page.evaluate(MAPS_SRC)
            page.locator(".widget-checkbox", has_text=name).locator("input").first.check()
            wait_for_maps(page, previous=before)
        time.sleep(2)
        descriptor, name = tempfile.mkstemp(suffix=".png")
        os.close(descriptor)  # playwright writes the file by its name
        raw = Path(name)
        page.screenshot(path=str(raw))
        save_small_png(raw, Path(args.out), args.max_kb)
        raw.unlink()


def memory(args: argparse.Namespace, browser) -> None:  # type: ignore[no-untyped-def]
    folder = Path(tempfile.mkdtemp(prefix="app-memory-"))
    runs: list[tuple[str, Sequence[str], Sequence[str]]] = [
        ("resnet50 (random weights, the app's first model)", ["--random-weights"], [])
    ]
    for name in ("vgg16", "alexnet"):
        wrapper = folder / f"{name}_random.py"
        wrapper.write_text(WRAPPER.format(name=name))
        runs.append((f"{name} (random weights, alone in the kernel)", ["--model-file", str(wrapper)], []))
    if args.model_file:
        runs.append((f"model file {Path(args.model_file).name}", ["--model-file", args.model_file], []))
    runs.append(
        ("resnet50, then vgg16, then alexnet in one page (random weights)", ["--random-weights"], ["vgg16", "alexnet"])
    )
    print("| kernel of one page | RSS after the first maps (MiB) | peak RSS (MiB) | server RSS (MiB) |")
    print("| --- | --- | --- | --- |")
    for label, options, then in runs:
        with serve(*options) as (url, process):
            page = open_page(browser, url, 1300, 1200)
            for model in then:
                select(page, 0, model)
            time.sleep(2)
            (kernel,) = kernel_pids(process.pid)
            rss, peak = memory_mb(kernel)
            server, _ = memory_mb(process.pid)
            print(f"| {label} | {rss:.0f} | {peak:.0f} | {server:.0f} |", flush=True)
            page.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    shot = sub.add_parser("screenshot")
    shot.add_argument("--model-file", default=str(REPO.parent / "shared/models/mobilenet_v2_imagenet/model.py"))
    shot.add_argument("--images", default=str(REPO.parent / "shared/data/imagenet_samples/labels.csv"))
    shot.add_argument(
        "--image", default="images/n02279972_monarch.JPEG", help="the image shown (its name in the image menu)"
    )
    shot.add_argument("--tick", nargs="*", default=["Grad++ScoreCAM"], help="methods ticked besides the initial ones")
    shot.add_argument("--out", default=str(REPO / "docs/explorer_app.png"))
    shot.add_argument("--width", type=int, default=1250)
    shot.add_argument("--height", type=int, default=1500)
    shot.add_argument("--max-kb", type=int, default=290)
    mem = sub.add_parser("memory")
    mem.add_argument("--model-file", help="also measure this model file (e.g. the shared MobileNetV2)")
    for p in (shot, mem):
        p.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
        try:
            (screenshot if args.command == "screenshot" else memory)(args, browser)
        finally:
            browser.close()


if __name__ == "__main__":
    main()
