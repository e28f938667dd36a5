"""The explorer's computations without widgets: run the methods one after another, stop them, collect what came out.

:class:`ComputeController` owns the background thread, the stop request and the record of each run (a
:class:`RunReport`: the finished maps, the errors, where and why a run stopped). The widget layer
(:mod:`.widgets`) only starts runs and draws reports, through three callbacks:

* ``on_start(report)`` in the caller's thread, before anything is computed (draw "computing …"),
* ``on_progress(name, done, total)`` while a score-based method scores its masked images,
* ``on_done(report)`` when the run has ended, finished or not (draw the maps, say what went wrong).

In the background (``background=True``) the last two run in the worker thread. Every selection change calls
:meth:`ComputeController.cancel` first, so a worker never computes for a selection that is no longer shown.

Stopping is cooperative: the stop request is read by the score-based methods after each chunk of masked
images (see :func:`.compute.stop_aware_progress`); the explainers restore the model when the stop passes
through them, and nothing half-done is cached. A kernel interrupt (KeyboardInterrupt, when computing in the
caller's thread) is recorded the same way.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from ..errors import GradScoreCAMError
from .cache import LRUCache, ResultKey
from .compute import MethodResult, _Stopped
from .session import Session

StopReason = Literal["stop", "interrupt", "superseded"]


@dataclass
class RunReport:
    """What one run of methods produced.

    Attributes:
        names: the methods asked for, in order.
        keys: method -> the cache key it was computed under (the selection when the run started).
        results: method -> its finished result (also in the session's cache).
        errors: method -> why the library refused it (a :class:`~gradscorecam.errors.GradScoreCAMError`, e.g.
            CAM on a network without a GAP head): deterministic, so remembered and not run again.
        failures: method -> an unexpected error as ``"Type: message"`` (not remembered: a retry may work).
        tracebacks: method -> the traceback of its unexpected error (for bug reports).
        stopped: the method that was running when the run stopped, else None.
        reason: ``"stop"`` (:meth:`ComputeController.stop`, the Stop button), ``"interrupt"`` (a kernel
            interrupt) or ``"superseded"`` (:meth:`ComputeController.cancel`: the selection changed).
        not_run: after a stop, the stopped method and those after it (none of them has a result).
        callback_error: the traceback of an exception raised by ``on_done`` (kept, not lost in a thread).
    """

    names: tuple[str, ...]
    keys: dict[str, ResultKey] = field(default_factory=dict)
    results: dict[str, MethodResult] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    tracebacks: dict[str, str] = field(default_factory=dict)
    stopped: str | None = None
    reason: StopReason | None = None
    not_run: tuple[str, ...] = ()
    callback_error: str = ""
    finished: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)

    @property
    def complete(self) -> bool:
        """Whether every method ran to its end (with a result or an error)."""
        return self.stopped is None and set(self.results) | set(self.errors) | set(self.failures) == set(self.names)


class ComputeController:
    """Runs methods for a :class:`~.session.Session`'s current selection, stops them, and keeps what came out.

    Args:
        session: whose selection is computed and whose cache receives the finished maps.
        background: compute in a worker thread (the caller returns at once); else in the caller's thread.
        on_start, on_progress, on_done: the view's callbacks (module docstring).
        cache_size: how many diagnosed failures (:attr:`errors`) are remembered.
    """

    def __init__(
        self,
        session: Session,
        *,
        background: bool = False,
        on_start: Callable[[RunReport], None] | None = None,
        on_progress: Callable[[str, int, int], None] | None = None,
        on_done: Callable[[RunReport], None] | None = None,
        cache_size: int = 64,
    ) -> None:
        self.session = session
        self.background = background
        self.on_start = on_start
        self.on_progress = on_progress
        self.on_done = on_done
        #: diagnosed, deterministic failures per result key: shown instead of running the method again
        self.errors: LRUCache[str] = LRUCache(cache_size)
        #: set while a stop is requested; compute functions read it through ``should_stop``
        self.stop_requested = threading.Event()
        #: the report of the latest run (None before the first)
        self.last: RunReport | None = None
        self._running: tuple[str, ...] = ()
        self._superseding = False
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> tuple[str, ...]:
        """The methods of the run in progress (empty when none is)."""
        return self._running

    def start(self, names: Sequence[str]) -> RunReport:
        """Compute ``names`` for the current selection, one after another; a run in progress is cancelled first.

        Returns the new run's report; it is filled in as the methods finish (``report.finished`` is set at
        the end). In the caller's thread the run has ended when this returns.
        """
        self.cancel()
        report = RunReport(tuple(names))
        report.keys = {name: self.session.key(name) for name in report.names}
        self.last = report
        self._running = report.names
        self.stop_requested.clear()
        if self.on_start is not None:
            self.on_start(report)
        if self.background:
            self._thread = threading.Thread(target=self._run, args=(report,), daemon=True, name="explorer-compute")
            self._thread.start()
        else:
            self._run(report)
        return report

    def stop(self) -> None:
        """Ask the running method to stop at its next progress report (the Stop button); does not wait."""
        self.stop_requested.set()

    def cancel(self) -> None:
        """Stop a background run and wait for it, its report saying ``"superseded"`` (before the selection changes)."""
        thread = self._thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            self._superseding = True
            self.stop_requested.set()
            thread.join()
        self._thread = None
        self._superseding = False
        self.stop_requested.clear()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for a background run to end; True when none is running any more."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def error_for(self, key: ResultKey) -> str | None:
        """The remembered diagnosed failure of the method and selection ``key``, if any."""
        return self.errors.get(key)

    def _run(self, report: RunReport) -> None:
        try:
            for position, name in enumerate(report.names):
                try:
                    report.results[name] = self.session.compute(
                        name, progress=self._progress_of(name), should_stop=self.stop_requested.is_set
                    )
                except (_Stopped, KeyboardInterrupt) as stop:
                    report.stopped, report.not_run = name, report.names[position:]
                    if self._superseding:
                        report.reason = "superseded"
                    else:
                        report.reason = "interrupt" if isinstance(stop, KeyboardInterrupt) else "stop"
                    break
                except GradScoreCAMError as error:
                    report.errors[name] = str(error)
                    self.errors.put(report.keys[name], str(error))
                except Exception as error:  # reported in the method's panel; the next method still runs
                    report.failures[name] = f"{type(error).__name__}: {error}"
                    report.tracebacks[name] = traceback.format_exc()
        finally:
            self._running = ()
            try:
                if self.on_done is not None:
                    self.on_done(report)
            except Exception:  # a drawing error in the worker thread must not vanish with it
                report.callback_error = traceback.format_exc()
            report.finished.set()

    def _progress_of(self, name: str) -> Callable[[int, int], None] | None:
        if self.on_progress is None:
            return None
        on_progress = self.on_progress

        def report(done: int, total: int) -> None:
            on_progress(name, done, total)

        return report
