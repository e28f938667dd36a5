"""The explorer as a web app: ``notebooks/90_explorer.ipynb`` served by Voila (widgets and maps, no code).

    python -m gradscorecam.explorer.app [--model-file F] [--images SRC] [--device cpu] [--port 8866]
                                        [--ip 127.0.0.1] [--no-browser] [--random-weights] [--no-token]

(``./run_all.sh explore ...`` runs exactly this.) What it does:

* finds the notebook in the compendium checkout it is run in (as ``run_all.sh`` does) or ``--notebook``;
* passes the options to the notebook as environment variables (:data:`ENVIRONMENT`), which the notebook's
  ``parameters`` cell reads as its defaults; papermill's injected cell, which comes after it, still overrides
  them, so ``run_all.sh`` runs the same notebook unchanged;
* serves it with Voila on ``127.0.0.1`` (``--ip 0.0.0.0`` for a shared classroom server), one kernel per browser
  tab, behind a random token (:func:`secrets.token_urlsafe`, new at every start): only a request that carries it
  (``?token=...`` in the printed address, then the login cookie) gets the page and a kernel. The page can run
  code as the server's account (its model box loads any model file, which is Python), and every local user of a
  shared machine can reach ``127.0.0.1``, so the token is on unless ``--no-token`` (a trusted single-user
  machine only). Before execution, :func:`app_notebook` drops the cells tagged ``not-in-app`` (the ones that set the
  explorer from code for the executed copy) and runs the kernel registered for this interpreter, so the page
  shows the explorer's controls and maps only;
* opens the default browser (Python's :mod:`webbrowser`) on that address once the port accepts connections,
  unless ``--no-browser``. Ctrl-C (or SIGTERM) stops the server and shuts down every kernel it started.

Problems it can see before starting (voila not installed, the notebook or a model file or image source
missing, the port taken or out of range, an ``--ip`` that is not an address of this machine) stop it with a
message naming the fix, before any server starts.
"""

from __future__ import annotations

import argparse
import errno
import os
import secrets
import socket
import sys
import threading
import time
import webbrowser
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import GradScoreCAMError

#: The notebook the app serves, inside the checkout's ``notebooks/``.
NOTEBOOK_NAME = "90_explorer.ipynb"
#: Cells with this tag run under papermill and in Jupyter, but not in the app.
APP_EXCLUDE_TAG = "not-in-app"
#: Option -> the environment variable the notebook's parameters cell reads it from.
ENVIRONMENT: dict[str, str] = {
    "model_file": "GRADSCORECAM_MODEL_FILE",
    "image_source": "GRADSCORECAM_IMAGES",
    "device": "GRADSCORECAM_DEVICE",
    "weights": "GRADSCORECAM_WEIGHTS",
}
#: The value of ``GRADSCORECAM_WEIGHTS`` that asks for random torchvision weights (a pipeline check).
RANDOM_WEIGHTS = "random"
DEFAULT_PORT = 8866
#: Bytes of randomness in the access token (:func:`secrets.token_urlsafe`: 32 URL-safe characters).
TOKEN_BYTES = 24


class AppError(GradScoreCAMError, RuntimeError):
    """The app cannot start: the message says what is missing and how to fix it."""


def find_notebook(notebook: str | os.PathLike[str] | None = None, start: Path | None = None) -> Path:
    """``notebook`` if given (it must exist), else ``notebooks/90_explorer.ipynb`` of the checkout ``start`` lies in."""
    if notebook is not None:
        path = Path(notebook).expanduser().resolve()
        if not path.is_file():
            raise AppError(f"--notebook {notebook}: no such file; give the path of 90_explorer.ipynb.")
        return path
    from ..pipeline import PipelineError, find_notebooks_dir

    try:
        folder = find_notebooks_dir(start)
    except PipelineError as error:
        raise AppError(f"{error} (here: --notebook PATH/{NOTEBOOK_NAME})") from None
    path = folder / NOTEBOOK_NAME
    if not path.is_file():
        raise AppError(
            f"{folder} has no {NOTEBOOK_NAME}; restore it from the repository (git checkout -- notebooks/{NOTEBOOK_NAME})."
        )
    return path


def check_voila() -> None:
    """AppError with the install command when Voila (the server) is not installed."""
    try:
        import voila.app  # noqa: F401
    except ImportError as error:
        raise AppError(
            f"the web app needs Voila, which is not installed ({error}). Install the explorer's extra: "
            'pip install -e ".[explorer]" in the checkout (or pip install voila).'
        ) from None


def port_number(text: str) -> int:
    """argparse's ``type`` for ``--port``: an integer from 1 to 65535, else a message saying so."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; give a port from 1 to 65535") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number; give one from 1 to 65535 (default 8866)")
    return port


def browse_host(ip: str) -> str:
    """The host a browser on this machine uses to reach a server listening on ``ip`` (IPv6 in brackets)."""
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(ip, ip)
    return f"[{host}]" if ":" in host else host


def page_url(ip: str, port: int, token: str | None) -> str:
    """The page's address for a browser on this machine, with ``?token=`` when the server has a token."""
    return f"http://{browse_host(ip)}:{port}/" + (f"?token={token}" if token else "")


def check_port(ip: str, port: int) -> None:
    """AppError when the server could not listen on ``ip``:``port``, probed as Tornado binds.

    ``ip`` is resolved with :func:`socket.getaddrinfo` (so ``::1``, ``0.0.0.0`` and host names work) and each of its
    addresses is bound once with ``SO_REUSEADDR``, as Tornado does, so a port still in TIME_WAIT after the app was
    stopped counts as free. Each failure has its own message: an ``--ip`` that does not resolve or is not an address
    of this machine, a port in use, a port not allowed (below 1024 without root).
    """
    try:
        addresses = socket.getaddrinfo(ip or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as error:
        raise AppError(
            f"--ip {ip}: not an address this machine can listen on ({error}); give one of its addresses, e.g. "
            "127.0.0.1 (this machine only) or 0.0.0.0 (every network interface)."
        ) from None
    for family, kind, proto, _, address in dict.fromkeys(addresses):
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # as Tornado: IPv6 only
            try:
                sock.bind(address)
            except OSError as error:
                raise AppError(_bind_error(ip, port, error)) from None


def _bind_error(ip: str, port: int, error: OSError) -> str:
    if error.errno == errno.EADDRINUSE:
        return (
            f"cannot listen on {ip}:{port}: the port is in use (is the app already running? open "
            f"{page_url(ip, port, None)} ); choose another with --port."
        )
    if error.errno == errno.EACCES:
        return f"cannot listen on {ip}:{port}: not allowed (ports below 1024 need root); choose another with --port."
    if error.errno == errno.EADDRNOTAVAIL:
        return (
            f"--ip {ip}: not an address of this machine ({error.strerror}); give one of its addresses, e.g. "
            "127.0.0.1 (this machine only) or 0.0.0.0 (every network interface)."
        )
    return f"cannot listen on {ip}:{port} ({error.strerror}); check --ip and --port."


def notebook_environment(
    model_file: str | None = None,
    image_source: str | None = None,
    device: str | None = None,
    random_weights: bool = False,
) -> dict[str, str]:
    """The environment variables that carry the options to the notebook's parameters cell (paths made absolute).

    Raises AppError naming the option when a model file or image source does not exist.
    """
    env: dict[str, str] = {}
    for key, value in (("model_file", model_file), ("image_source", image_source)):
        if not value or value == "builtin":
            continue
        path = Path(value).expanduser().resolve()
        if not path.exists():
            option = "--model-file" if key == "model_file" else "--images"
            raise AppError(f"{option} {value}: no such file or folder")
        env[ENVIRONMENT[key]] = str(path)
    if device:
        env[ENVIRONMENT["device"]] = device
    if random_weights:
        env[ENVIRONMENT["weights"]] = RANDOM_WEIGHTS
    return env


def app_notebook(notebook: Any, kernel_name: str | None = None) -> Any:
    """The notebook as the app runs it: without the cells tagged :data:`APP_EXCLUDE_TAG`, on ``kernel_name``.

    Voila's ``prelaunch_hook`` calls it (through :func:`make_prelaunch_hook`) on a fresh copy of the notebook for
    every page load, so the file on disk is never changed.
    """
    notebook.cells = [
        cell for cell in notebook.cells if APP_EXCLUDE_TAG not in cell.get("metadata", {}).get("tags", [])
    ]
    if kernel_name is not None:
        notebook.metadata["kernelspec"] = {
            "name": kernel_name,
            "display_name": "Python (gradscorecam)",
            "language": "python",
        }
    return notebook


def make_prelaunch_hook(kernel_name: str | None) -> Callable[[Any, Any, str], Any]:
    """Voila's ``VoilaConfiguration.prelaunch_hook``: :func:`app_notebook` on every page's notebook.

    Also usable where Voila runs as a Jupyter server extension (JupyterHub), in ``jupyter_server_config.py``:
    ``c.VoilaConfiguration.prelaunch_hook = make_prelaunch_hook(None)`` (``None`` keeps the notebook's kernel).
    """

    def hook(request_handler: Any, notebook: Any, cwd: str) -> Any:
        return app_notebook(notebook, kernel_name)

    return hook


def kernel_env(base: Mapping[str, str], options: Mapping[str, str], checkout: Path | None) -> dict[str, str]:
    """The server's environment, which Voila's kernels inherit: the options, and this checkout's ``lib/`` first
    on ``PYTHONPATH`` (so the kernel imports the library of the checkout it is served from, as run_all.sh does)."""
    env = {**base, **options}
    for key in ENVIRONMENT.values():  # an option not given must not come from the caller's environment
        if key not in options:
            env.pop(key, None)
    if checkout is not None and (checkout / "lib" / "gradscorecam").is_dir():
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(checkout / "lib"), base.get("PYTHONPATH")]))
    return env


def open_browser_when_up(url: str, ip: str, port: int, timeout: float = 120.0) -> threading.Thread:
    """Open ``url`` in the default browser as soon as the server accepts connections (in a background thread)."""

    def wait_and_open() -> None:
        host = browse_host(ip).strip("[]")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((host, port), timeout=1):
                    break
            except OSError:
                time.sleep(0.3)
        else:
            return
        webbrowser.open(url)

    thread = threading.Thread(target=wait_and_open, name="open-browser", daemon=True)
    thread.start()
    return thread


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run_all.sh explore", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model-file", help="a .py file whose build_model() returns the network to explain, offered first"
    )
    parser.add_argument(
        "--images", dest="image_source", help="a labels CSV or a folder of images (default: the built-in photographs)"
    )
    parser.add_argument("--device", help="cpu (default), cuda, cuda:1 or auto")
    parser.add_argument("--random-weights", action="store_true",
                        help="torchvision models with random weights (every map is marked: a check of the app only)")  # fmt: skip
    parser.add_argument(
        "--port", type=port_number, default=DEFAULT_PORT, help=f"port to serve on, 1-65535 (default {DEFAULT_PORT})"
    )
    parser.add_argument("--ip", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: every student on the network)")  # fmt: skip
    parser.add_argument("--no-browser", action="store_true", help="do not open a browser (print the address only)")
    parser.add_argument("--no-token", action="store_true",
                        help="serve without the access token: anyone who can reach the port can run code as your "
                             "account; only on a machine and network that you alone use")  # fmt: skip
    parser.add_argument(
        "--notebook", type=Path, help=f"the notebook to serve (default: notebooks/{NOTEBOOK_NAME} of this checkout)"
    )
    return parser


def voila_argv(notebook: Path, ip: str, port: int) -> list[str]:
    """Voila's command line: this notebook only, no port hunting (a taken port is an error), no code cells."""
    return [
        str(notebook),
        f"--port={port}",
        f"--Voila.ip={ip}",
        "--Voila.port_retries=0",
        "--no-browser",  # opened by open_browser_when_up, once the server answers
        "--VoilaConfiguration.strip_sources=True",
        "--VoilaConfiguration.show_tracebacks=False",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        check_voila()
        notebook = find_notebook(args.notebook)
        options = notebook_environment(args.model_file, args.image_source, args.device, args.random_weights)
        check_port(args.ip, args.port)
    except AppError as error:
        print(f"explore: {error}", file=sys.stderr)
        return 2
    from traitlets.config import Config
    from voila.app import Voila

    from ..pipeline import ensure_kernel

    env = kernel_env(os.environ, options, notebook.parent.parent)
    for key in [k for k in os.environ if k not in env]:
        del os.environ[key]
    os.environ.update(env)  # Voila starts its kernels with the server's environment
    token = None if args.no_token else secrets.token_urlsafe(TOKEN_BYTES)
    config = Config()
    config.VoilaConfiguration.prelaunch_hook = make_prelaunch_hook(ensure_kernel())
    if token:
        config.Voila.token = token  # in the config, not on a command line that ps shows
    url = page_url(args.ip, args.port, token)
    print(f"Serving {notebook} at {url} (Ctrl-C stops the server and its kernels)", flush=True)
    if token:
        print("  the token in this address lets its holder run code as your account: share it only with your class",
              flush=True)  # fmt: skip
    else:
        print("  --no-token: anyone who can reach this port can run code as your account", flush=True)
    if args.ip not in ("127.0.0.1", "localhost", "::1"):
        query = f"?token={token}" if token else ""
        print(f"  listening on {args.ip}: other machines that can reach this one open "
              f"http://{socket.gethostname()}:{args.port}/{query}", flush=True)  # fmt: skip
    if not args.no_browser:
        open_browser_when_up(url, args.ip, args.port)
    app = Voila(config=config)
    app.initialize(voila_argv(notebook, args.ip, args.port))
    app.start()
    return 0


if __name__ == "__main__":
    sys.exit(main())
