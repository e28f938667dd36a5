"""The explorer's user interface: ipywidgets controls around a :class:`~.session.Session`.

The view only: the computations (the background thread, stopping, collecting results and errors) are a
:class:`~.controller.ComputeController`, which calls back here to draw. Every control change goes through
one guarded handler: errors the library diagnoses (an unreadable image, a layer without a 4-D output, CAM on
VGG16 ...) become a message in the widget and the explorer stays usable; a kernel interrupt or the Stop button during a computation says "interrupted" and caches
nothing. The opacity slider only redraws from the cached maps.

What is on screen is also kept in :attr:`Explorer.displayed` (:class:`Displayed`), the maps as the
explainers returned them, so tests and notebooks can check the real values rather than pixels.
"""

from __future__ import annotations

import html
import threading
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

import ipywidgets as widgets
from PIL import Image
from torch import Tensor

from ..errors import GradScoreCAMError, WeightsUnavailableError
from ..explainers import METHODS
from ..explainers.registry import describe_budget
from ..explainers.scoring import Budget
from ..plotting import RANDOM_WEIGHTS_MARK, to_display_image
from .cache import ResultKey
from .compute import (
    MethodResult,
    TeachingView,
    budget_text,
    channel_budget,
    channels_to_score,
    class_name,
    find_classes,
    model_device,
    parse_budget,
    top_classes,
)
from .controller import ComputeController, RunReport
from .render import Cell, maps_figure, png_bytes, teaching_figure
from .session import ExplainerFactory, Session
from .sources import (
    DEFAULT_MODEL_NAMES,
    ImageEntry,
    ImageFactory,
    ModelFactory,
    ModelLike,
    decode_image_bytes,
    is_random,
    upload_key,
    uploaded_files,
)

Level = Literal["info", "warning", "error"]
#: Score-based computations estimated to take longer than this many seconds wait for "Compute anyway".
DEFAULT_WARN_SECONDS = 15.0
_COLOURS = {"info": "#1f4e79", "warning": "#8a5a00", "error": "#a4000f"}
#: Added to a missing-weights message: the other way to a trained network, from the page or the web app's command.
WEIGHTS_HINT = (
    "Or explain a network whose weights you have: type the path of a model file (a .py with build_model()) in the "
    "box beside the model menu and press “load model”, or start the web app with it: "
    "./run_all.sh explore --model-file FILE."
)


@dataclass
class Displayed:
    """What the explorer shows right now: the state its pictures are drawn from.

    Attributes:
        results: method -> its finished :class:`~.compute.MethodResult` (map, seconds, channels scored).
        maps: method -> (H, W) map in [0, 1] on the CPU, exactly as the explainer returned it.
        seconds: method -> seconds the explainer call took (when it was computed, also if now cached).
        errors: method -> why it has no map (e.g. CAM is not defined for this model).
        pending: method -> why it was not computed yet (estimated too long: "Compute anyway").
        deferred: the pending methods that wait for "Compute anyway" (estimated too long, or stopped).
        budgets: score-based method -> the channel budget it runs with under the current settings (its effective
            ``max_channels``: ``"all"`` or an int; "default" resolved to the method's own).
        teaching: method -> how its map was built (:class:`~.compute.TeachingView`).
        prediction: the top-5 ``(class index, name, probability)``.
        messages: the current messages (errors, warnings, "interrupted"), most recent last.
        detail: the traceback of the last unexpected error (not shown; for bug reports).
        renders: how many times the maps picture was drawn (an opacity change draws, nothing recomputes).
    """

    model: str | None = None
    layer: str | None = None
    image: str | None = None
    target: int | None = None
    target_name: str = ""
    prediction: list[tuple[int, str, float]] = field(default_factory=list)
    methods: tuple[str, ...] = ()
    results: dict[str, MethodResult] = field(default_factory=dict)
    maps: dict[str, Tensor] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    pending: dict[str, str] = field(default_factory=dict)
    deferred: list[str] = field(default_factory=list)
    budgets: dict[str, Budget] = field(default_factory=dict)
    teaching: dict[str, TeachingView] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)
    level: Level = "info"
    opacity: float = 0.5
    random_weights: bool = False
    renders: int = 0
    png: bytes = b""
    detail: str = ""


class Explorer:
    """An interactive CAM explorer: pick a model, layer, image, class and methods; see the maps and how they are built.

    Args:
        models: display name -> function returning a model with what it takes to explain it
            (:class:`~.sources.ModelLike`, e.g. ``gradscorecam.models.ModelSpec``, or a ``build_model()``
            mapping). Nothing is loaded until a model is selected; the first is selected at start.
        images: display name -> :class:`~.sources.ImageEntry`, function returning a PIL image, or PIL image.
        methods: the methods offered, by name; default the six methods of the paper (:data:`gradscorecam.METHODS`).
        initial_methods: the methods ticked at start.
        options: extra constructor options per method, e.g. ``{"SmoothGrad-CAM++": {"n_samples": 8}}``.
        max_channels: channel budget of the score-based methods at start: an int, ``"all"`` (every channel) or
            None (not given: each method's default, Score-CAM every channel, Grad++ScoreCAM 64).
        batch_size: masked inputs per forward pass of the score-based methods.
        warn_seconds: score-based computations estimated longer than this wait for "Compute anyway".
        background: compute in a background thread, so the widgets stay responsive and the Stop button works.
            With ``False`` computations run in the widget callback; the kernel's interrupt button stops them.
        model_loader: turns a path typed in the "model file" box into a model (``None`` hides the box).
        image_source_loader: turns a folder or labels-CSV path typed in the box into images (``None`` hides it).
        opacity: initial opacity of the maps.
        teaching_channels: channels shown per method in the teaching view.
        autostart: select the first model and image and compute at once.
        factory: builds the explainers; the library's :func:`~gradscorecam.explainers.make_explainer`.

    Display it by leaving it as the last expression of a cell (or ``display(explorer)``).
    """

    def __init__(
        self,
        models: Mapping[str, ModelFactory],
        images: Mapping[str, ImageEntry | ImageFactory | Image.Image] | None = None,
        *,
        methods: Sequence[str] = tuple(METHODS),
        initial_methods: Sequence[str] = ("Grad-CAM",),
        options: Mapping[str, Mapping[str, Any]] | None = None,
        max_channels: Budget | None = None,
        batch_size: int = 32,
        warn_seconds: float = DEFAULT_WARN_SECONDS,
        background: bool = False,
        model_loader: Callable[[str], ModelLike] | None = None,
        image_source_loader: Callable[[str], Mapping[str, ImageEntry]] | None = None,
        opacity: float = 0.5,
        teaching_channels: int = 6,
        cache_size: int = 64,
        autostart: bool = True,
        factory: ExplainerFactory | None = None,
    ) -> None:
        unknown = [m for m in initial_methods if m not in methods]
        if unknown:
            raise ValueError(f"initial_methods {unknown} are not among the methods {list(methods)}")
        self.session = Session(
            models, images, methods=methods, options=options, max_channels=max_channels, batch_size=batch_size,
            cache_size=cache_size, teaching_channels=teaching_channels, **({"factory": factory} if factory else {}),
        )  # fmt: skip
        self.warn_seconds = warn_seconds
        self.model_loader = model_loader
        self.image_source_loader = image_source_loader
        self.displayed = Displayed(opacity=opacity)
        self.controller = ComputeController(
            self.session, background=background, on_start=self._on_run_start, on_progress=self._on_progress,
            on_done=self._on_run_done, cache_size=cache_size,
        )  # fmt: skip
        self._deferred: dict[ResultKey, str] = {}  # not started (too slow) or stopped: why, until "Compute anyway"
        self._quiet = 0
        self._search_model: str | None = None
        self._searched: list[int] = []  # classes chosen by search: kept in the class list for the next images
        self._teaching_drawn: tuple[object, ...] | None = None
        self._teaching_views: tuple[object, ...] = ()
        self._lock = threading.RLock()  # drawing: the worker thread and the widget callbacks both draw
        self._build_widgets(initial_methods, opacity)
        if autostart:
            self._guarded(self._start, clear=False)

    # ----------------------------------------------------------------------------------- construction
    @classmethod
    def default(
        cls,
        model_names: Sequence[str] = DEFAULT_MODEL_NAMES,
        *,
        model_file: str | None = None,
        weights: str | None = "DEFAULT",
        device: str = "cpu",
        image_source: str = "builtin",
        **kwargs: Any,
    ) -> Explorer:
        """The explorer on the library's models and images (``gradscorecam.models``, ``gradscorecam.datasets``).

        Args:
            model_names: torchvision model names offered (loaded with ``load_model(name, weights, device)``).
            model_file: a ``.py`` file with ``build_model()``, offered first (and selected at start).
            weights: ``"DEFAULT"`` (pretrained) or ``None`` (random weights: every picture says so).
            image_source: ``"builtin"`` (the bundled photographs), a labels CSV, or a folder of images.
            kwargs: passed to :class:`Explorer` (e.g. ``max_channels``, ``initial_methods``, ``background``).
        """
        from .sources import library_images, library_model_factories, model_file_factory

        models = library_model_factories(model_names, model_file=model_file, weights=weights, device=device)
        images = library_images(image_source)

        def load_file(path: str) -> ModelLike:
            return model_file_factory(path, device=device)()  # type: ignore[return-value]

        kwargs.setdefault("background", True)
        kwargs.setdefault("model_loader", load_file)
        kwargs.setdefault("image_source_loader", library_images)
        return cls(models, images, **kwargs)

    def _build_widgets(self, initial_methods: Sequence[str], opacity: float) -> None:
        wide = widgets.Layout(width="420px")
        style = {"description_width": "70px"}
        s = self.session
        self.title = widgets.HTML("<b>CAM explorer</b> — how each method explains the network's decision")
        self.random_banner = widgets.HTML("", layout=widgets.Layout(display="none"))
        self.model_dropdown = widgets.Dropdown(
            options=list(s.model_factories), value=None, description="model", layout=wide, style=style
        )
        self.model_file = widgets.Text(
            placeholder="or a model file (.py with build_model())", layout=widgets.Layout(width="300px")
        )
        self.model_file_button = widgets.Button(description="load model", layout=widgets.Layout(width="110px"))
        self.layer_dropdown = widgets.Dropdown(options=[], description="layer", layout=wide, style=style)
        self.image_dropdown = widgets.Dropdown(
            options=list(s.images), value=None, description="image", layout=wide, style=style
        )
        self.upload = widgets.FileUpload(accept="image/*", multiple=False, description="upload image")
        self.image_source = widgets.Text(placeholder="or a folder / labels CSV", layout=widgets.Layout(width="240px"))
        self.image_source_button = widgets.Button(description="open", layout=widgets.Layout(width="70px"))
        self.class_dropdown = widgets.Dropdown(options=[], description="class", layout=wide, style=style)
        self.class_search = widgets.Combobox(
            placeholder="search any class by name", ensure_option=False, layout=widgets.Layout(width="300px")
        )
        self.method_checkboxes = {
            name: widgets.Checkbox(
                value=name in initial_methods, description=name, indent=False, layout=widgets.Layout(width="175px")
            )
            for name in s.methods
        }
        self.opacity_slider = widgets.FloatSlider(
            value=opacity, min=0.0, max=1.0, step=0.05, description="opacity", style=style, layout=wide
        )
        # The budget of Score-CAM and Grad++ScoreCAM: "default" (each its own: every channel, 64), "all", or a number.
        self.channels_input = widgets.Combobox(
            value=budget_text(s.max_channels), options=["default", "all", "16", "32", "64", "128", "256", "512"],
            ensure_option=False, continuous_update=False, description="channels scored",
            placeholder="default, all, or a number", style={"description_width": "110px"},
            layout=widgets.Layout(width="230px"),
        )  # fmt: skip
        self.budget_note = widgets.HTML("")
        self.message = widgets.HTML("")
        self.compute_button = widgets.Button(
            description="Compute anyway", button_style="warning", layout=widgets.Layout(display="none")
        )
        self.progress = widgets.IntProgress(
            value=0, min=0, max=1, description="", layout=widgets.Layout(display="none", width="420px")
        )
        self.stop_button = widgets.Button(
            description="Stop", button_style="danger", layout=widgets.Layout(display="none")
        )
        self.progress_note = widgets.HTML("")
        self.status = widgets.HTML("")
        self.maps_image = widgets.Image(format="png", layout=widgets.Layout(max_width="100%"))
        self.teaching_notes = widgets.HTML("")
        self.teaching_image = widgets.Image(format="png", layout=widgets.Layout(max_width="100%"))
        self.teaching = widgets.Accordion(
            children=[widgets.VBox([self.teaching_notes, self.teaching_image])],
            titles=("How the maps are built (teaching view)",),
            selected_index=0,
        )

        model_row = [self.model_dropdown] + ([self.model_file, self.model_file_button] if self.model_loader else [])
        image_row = [self.image_dropdown, self.upload] + (
            [self.image_source, self.image_source_button] if self.image_source_loader else []
        )
        self.widget = widgets.VBox(
            [
                self.title,
                self.random_banner,
                widgets.HBox(model_row),
                self.layer_dropdown,
                widgets.HBox(image_row),
                widgets.HBox([self.class_dropdown, self.class_search]),
                widgets.HBox(list(self.method_checkboxes.values()), layout=widgets.Layout(flex_flow="row wrap")),
                widgets.HBox([self.opacity_slider, self.channels_input, self.budget_note]),
                widgets.HBox([self.message, self.compute_button]),
                widgets.HBox([self.progress, self.stop_button, self.progress_note]),
                self.status,
                self.maps_image,
                self.teaching,
            ]
        )
        self.model_dropdown.observe(lambda c: self._guarded(lambda: self._select_model(c["new"])), "value")
        self.layer_dropdown.observe(lambda c: self._guarded(lambda: self._select_layer(c["new"])), "value")
        self.image_dropdown.observe(lambda c: self._guarded(lambda: self._select_image(c["new"])), "value")
        self.class_dropdown.observe(lambda c: self._guarded(lambda: self._select_target(c["new"])), "value")
        self.class_search.observe(lambda c: self._guarded(lambda: self._search(c["new"])), "value")
        for box in self.method_checkboxes.values():
            box.observe(lambda c: self._guarded(self._update), "value")
        self.channels_input.observe(lambda c: self._guarded(lambda: self._set_channels(c["new"])), "value")
        self.opacity_slider.observe(lambda c: self._guarded(lambda: self._set_opacity(c["new"]), clear=False), "value")
        self.upload.observe(lambda c: self._guarded(lambda: self._on_upload(c["new"])), "value")
        self.compute_button.on_click(lambda _b: self._guarded(lambda: self._update(force=True)))
        self.stop_button.on_click(lambda _b: self.stop())
        self.model_file_button.on_click(lambda _b: self._guarded(self._load_model_file))
        self.image_source_button.on_click(lambda _b: self._guarded(self._open_image_source))

    # ------------------------------------------------------------------------------------- public API
    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    @property
    def background(self) -> bool:
        """Whether computations run in a background thread (the Stop button) or in the widget callback."""
        return self.controller.background

    @property
    def explainer_calls(self) -> int:
        """How many times an explainer ran (cache hits and redraws do not count)."""
        return self.session.explainer_calls

    @property
    def selected_methods(self) -> tuple[str, ...]:
        """The ticked methods, in the order of the method list."""
        return tuple(name for name, box in self.method_checkboxes.items() if box.value)

    def select(
        self,
        *,
        model: str | None = None,
        layer: str | None = None,
        image: str | None = None,
        target: int | None = None,
        methods: Sequence[str] | None = None,
        opacity: float | None = None,
        max_channels: Budget | Literal["default"] | None = None,
    ) -> Explorer:
        """Set controls from code, in dependency order (model, layer, image, class, methods, opacity).

        Exactly what a click would do, so notebooks can show a chosen view and tests can drive the UI.
        A value the controls cannot show (a layer without a 4-D output, an unknown class) becomes a message.
        ``None`` leaves a control as it is; ``max_channels="default"`` gives each score-based method its own
        default budget, ``"all"`` every channel.
        """
        if model is not None:
            self.model_dropdown.value = model
        if max_channels is not None:
            self.channels_input.value = budget_text(None if max_channels == "default" else max_channels)
        if image is not None:
            self.image_dropdown.value = image
        if layer is not None:
            if layer in self.session.layers:  # the layer menu's values
                self.layer_dropdown.value = layer
            else:
                self._guarded(lambda: self._select_layer(layer))
        if target is not None:
            self._guarded(lambda: self._select_class(int(target)))
        if methods is not None:
            unknown = [m for m in methods if m not in self.method_checkboxes]
            if unknown:
                raise ValueError(f"unknown methods {unknown}; choose from {list(self.method_checkboxes)}")
            with self._quietly():
                for name, box in self.method_checkboxes.items():
                    box.value = name in methods
            self._guarded(self._update)
        if opacity is not None:
            self.opacity_slider.value = opacity
        return self

    def upload_file(self, name: str, content: bytes) -> None:
        """Hand in a file as if uploaded with the upload button (ipywidgets 8 value format)."""
        item = {"name": name, "type": "", "size": len(content), "content": memoryview(content),
                "last_modified": datetime.now(timezone.utc)}  # fmt: skip
        self.upload.value = (item,)

    def compute(self, force: bool = True) -> None:
        """Compute the ticked methods for the current selection (``force``: also those estimated to be slow)."""
        self._guarded(lambda: self._update(force=force))

    def stop(self) -> None:
        """Ask the running computation to stop at its next progress report (the Stop button)."""
        self.controller.stop()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for a background computation to finish; True when none is running any more."""
        return self.controller.wait(timeout)

    # ----------------------------------------------------------------------------------- the handlers
    def _guarded(self, action: Callable[[], None], clear: bool = True) -> None:
        """Run a handler; turn every error into a message so that the explorer keeps working."""
        if self._quiet:
            return
        if clear:
            self._clear_messages()
        try:
            action()
        except WeightsUnavailableError as error:  # offline without the torchvision file: say both ways out
            self._say(f"{error} {WEIGHTS_HINT}", "error")
        except GradScoreCAMError as error:
            self._say(str(error), "error")
        except KeyboardInterrupt:
            self._say("interrupted (kernel interrupt).", "warning")
        except Exception as error:  # an unexpected failure must not leave a dead widget in a classroom
            self._say(f"unexpected error: {type(error).__name__}: {error}", "error", detail=traceback.format_exc())
        finally:
            self._show_messages()

    @contextmanager
    def _reverting(self, dropdown: widgets.Dropdown, shown: Any) -> Iterator[None]:
        """Run a selection; if it fails, put ``dropdown`` back on ``shown`` (what the session still shows)."""
        try:
            yield
        except BaseException:
            with self._quietly():
                dropdown.value = shown
            raise

    @contextmanager
    def _quietly(self) -> Iterator[None]:
        """Change controls without their handlers firing (options refilled from the session's state)."""
        self._quiet += 1
        try:
            yield
        finally:
            self._quiet -= 1

    def _start(self) -> None:
        """Select the first image and the first model, then compute the ticked methods."""
        s = self.session
        first = next(iter(s.model_factories))
        with self._quietly():
            self.model_dropdown.value = first
        if s.images:
            first_image = next(iter(s.images))
            with self._quietly():
                self.image_dropdown.value = first_image
            try:
                s.select_image(first_image)
            except GradScoreCAMError as error:  # an unreadable first image must not keep the model from loading
                self._say(str(error), "error")
                with self._quietly():
                    self.image_dropdown.value = None
        self._select_model(first)

    def _select_model(self, key: str | None) -> None:
        if key is None:
            return
        self.controller.cancel()
        with self._reverting(self.model_dropdown, self.session.model_key):
            notes = self.session.select_model(key)
        for note in notes:
            self._say(note, "warning")
        self._refill_layers()
        self._refill_classes()
        self._update()

    def _select_layer(self, name: str | None) -> None:
        if name is None or name == self.session.layer:
            return
        self.controller.cancel()
        with self._reverting(self.layer_dropdown, self.session.layer):
            self.session.select_layer(name)
        self._update()

    def _select_image(self, key: str | None) -> None:
        if key is None or key == self.session.image_key:
            return
        self.controller.cancel()
        with self._reverting(self.image_dropdown, self.session.image_key):
            self.session.select_image(key)
        self._refill_layers()
        self._refill_classes()
        self._update()

    def _select_target(self, index: int | None) -> None:
        if index is None or index == self.session.target:
            return
        self.controller.cancel()
        self.session.select_target(index)
        self._update()

    def _select_class(self, index: int) -> None:
        """Select a class by index, adding it to the class list when it is not among the top 5."""
        self.controller.cancel()
        self.session.select_target(index)
        self._refill_classes(extra=index)
        self._update()

    def _search(self, text: str) -> None:
        s = self.session
        if s.spec is None or not text:
            return
        exact = {f"{name} ({i})": i for i, name in enumerate(s.spec.categories)}
        if text in exact:
            self._select_class(exact[text])
            return
        found = find_classes(s.spec.categories, text)
        if len(found) == 1:
            self._select_class(found[0])

    def _set_channels(self, text: str) -> None:
        with self._reverting(self.channels_input, budget_text(self.session.max_channels)):
            budget = parse_budget(text)
        self.controller.cancel()
        self.session.max_channels = budget
        with self._quietly():  # the canonical spelling ("ALL " -> "all")
            self.channels_input.value = budget_text(budget)
        self._update()

    def _set_opacity(self, value: float) -> None:
        """Only redraw: the maps come from the cache, no explainer runs."""
        with self._lock:
            self.displayed.opacity = float(value)
        self._render_maps()

    def _on_upload(self, value: object) -> None:
        files = uploaded_files(value)
        if not files:
            return
        with self._quietly():  # empty the button, so that the same file can be uploaded again
            self.upload.value = ()
        name, content = files[-1]
        picture = decode_image_bytes(content, f"the uploaded file {name!r}")  # a bad file stops here, nothing changes
        key = upload_key(name, content)
        self.session.add_image(key, ImageEntry(lambda: picture))
        self._refill_images(select=key)
        self._select_image(key)

    def _load_model_file(self) -> None:
        path = self.model_file.value.strip()
        if not path or self.model_loader is None:
            return
        loader = self.model_loader
        spec = loader(path)
        key = f"file: {path.rsplit('/', 1)[-1]}"
        self.session.add_model(key, lambda: spec)
        with self._quietly():
            self.model_dropdown.options = list(self.session.model_factories)
            self.model_dropdown.value = key
        self._select_model(key)

    def _open_image_source(self) -> None:
        path = self.image_source.value.strip()
        if not path or self.image_source_loader is None:
            return
        entries = self.image_source_loader(path)
        if not entries:
            self._say(f"{path} holds no images.", "warning")
            return
        for key, entry in entries.items():
            self.session.add_image(key, entry)
        first = next(iter(entries))
        self._refill_images(select=first)
        self._select_image(first)
        self._say(f"added {len(entries)} image(s) from {path}.", "info")

    # ---------------------------------------------------------------------------- options of controls
    def _refill_layers(self) -> None:
        s = self.session
        options = [(f"{name}   ({c}×{h}×{w})", name) for name, (c, h, w) in s.layers.items()]
        with self._quietly():
            self.layer_dropdown.options = options
            self.layer_dropdown.value = s.layer if s.layer in s.layers else None

    def _refill_images(self, select: str | None = None) -> None:
        with self._quietly():
            self.image_dropdown.options = list(self.session.images)
            self.image_dropdown.value = select if select is not None else self.session.image_key

    def _refill_classes(self, extra: int | None = None) -> None:
        """Top-5 predictions, the image's labelled class, the classes found by search, and the selected one."""
        s = self.session
        if s.spec is None or s.probabilities is None:
            with self._quietly():
                self.class_dropdown.options = []
            return
        probabilities, categories = s.probabilities, s.spec.categories
        new_model = self._search_model != s.model_key
        if new_model:  # class indices mean other classes now
            self._searched = []
        if extra is not None and extra not in self._searched:
            self._searched.append(extra)
        entries = [(f"{class_name(categories, i)} — {_p(p)}", i) for i, p in top_classes(probabilities, 5)]
        known = {i for _, i in entries}
        for index, prefix in [(s.label, "label: "), *[(i, "") for i in self._searched], (s.target, "")]:
            if index is not None and index not in known and 0 <= index < len(probabilities):
                entries.append((f"{prefix}{class_name(categories, index)} — {_p(float(probabilities[index]))}", index))
                known.add(index)
        with self._quietly():
            self.class_dropdown.options = entries
            self.class_dropdown.value = s.target
            if new_model:  # the names change with the model only
                self.class_search.options = [f"{name} ({i})" for i, name in enumerate(categories)]
                self.class_search.value = ""
                self._search_model = s.model_key

    # ---------------------------------------------------------------------------------- computation
    def _update(self, force: bool = False) -> None:
        """Show the ticked methods for the current selection: cached maps at once, the rest computed."""
        s = self.session
        self.controller.cancel()
        if not s.ready:
            self._render_all()
            return
        keys = {name: s.key(name) for name in self.selected_methods}
        missing = [
            name for name, key in keys.items() if s.results.get(key) is None and self.controller.error_for(key) is None
        ]
        if force:
            for name in missing:
                self._deferred.pop(keys[name], None)
        else:
            for name in missing:
                if s.is_score_based(name) and keys[name] not in self._deferred:
                    seconds = s.estimate(name)
                    if seconds > self.warn_seconds:
                        self._deferred[keys[name]] = f"not computed: estimated {seconds:.0f} s. Press “Compute anyway”."
                        total = s.layers[s.layer][0]  # type: ignore[index]
                        budget = channel_budget(s.options(name))
                        # a score-based explainer's options carry its resolved budget; a ready session has a model
                        assert budget is not None and s.spec is not None
                        n = channels_to_score(total, budget)
                        self._say(
                            f"{name} would take about {seconds:.0f} s here: {n} of {total} channels to score "
                            f"(budget: {describe_budget(budget)}), one "
                            f"forward pass each, on {model_device(s.spec.model)}. Press “Compute anyway”, or set fewer channels to score.",
                            "warning",
                        )
        to_compute = [name for name in missing if keys[name] not in self._deferred]
        if not to_compute:
            self._render_all()
            return
        self.controller.start(to_compute)

    # The controller's callbacks (in the worker thread when computing in the background).
    def _on_run_start(self, report: RunReport) -> None:
        s = self.session
        if self.background or any(s.is_score_based(name) for name in report.names):
            # a picture with "computing …" panels while the user waits (not worth drawing for a fast method)
            self._render_all(teaching=False)
        self.progress.value = 0
        self._show_progress(True)

    def _on_progress(self, name: str, done: int, total: int) -> None:
        self.progress.description = name
        self.progress.max = max(total, 1)
        self.progress.value = done
        self.progress_note.value = f"{done} / {total} masked images scored"

    def _on_run_done(self, report: RunReport) -> None:
        """Say what went wrong, remember what was stopped for “Compute anyway”, and draw what finished."""
        for name, failure in report.failures.items():
            self._say(f"{name}: unexpected error: {failure}", "error", detail=report.tracebacks[name])
        if report.reason in ("stop", "interrupt"):  # a superseded run is dropped silently: the user moved on
            how = "by a kernel interrupt" if report.reason == "interrupt" else "with the Stop button"
            self._say(f"interrupted: {report.stopped} was stopped {how}; nothing was cached. "
                      "Press “Compute anyway” to run it again.", "warning")  # fmt: skip
            for name in report.not_run:
                self._deferred[report.keys[name]] = "interrupted before it finished. Press “Compute anyway”."
        self._show_progress(False)
        self._render_all()
        self._show_messages()

    def _show_progress(self, visible: bool) -> None:
        display = None if visible else "none"
        self.progress.layout.display = display
        self.stop_button.layout.display = display if self.background else "none"
        self.progress_note.value = (
            "" if not visible else ("" if self.background else "interrupt the kernel (■) to stop")
        )

    # ------------------------------------------------------------------------------------- drawing
    def _collect(self) -> None:
        """Gather what is shown for the current selection into :attr:`displayed`."""
        s = self.session
        d = self.displayed
        d.model, d.layer, d.image, d.target = s.model_key, s.layer, s.image_key, s.target
        d.methods = self.selected_methods
        d.random_weights = is_random(s.spec)
        d.results, d.maps, d.seconds, d.errors, d.pending, d.teaching, d.deferred = {}, {}, {}, {}, {}, {}, []
        d.budgets = {}
        if s.spec is None or s.probabilities is None:
            d.prediction, d.target_name = [], ""
            return
        categories = s.spec.categories
        d.prediction = [(i, class_name(categories, i), p) for i, p in top_classes(s.probabilities, 5)]
        d.target_name = class_name(categories, s.target) if s.target is not None else ""
        if not s.ready:
            return
        for name in s.methods:
            if s.is_score_based(name):
                d.budgets[name] = channel_budget(s.options(name))  # type: ignore[assignment]
        running = self.controller.running
        for name in d.methods:
            key = s.key(name)
            result = s.results.get(key)
            if result is not None:
                d.results[name] = result
                d.maps[name] = result.saliency
                d.seconds[name] = result.seconds
                if result.teaching is not None:
                    d.teaching[name] = result.teaching
            elif (error := self.controller.error_for(key)) is not None:
                d.errors[name] = error
            elif name in running:
                d.pending[name] = "computing …"
            elif key in self._deferred:
                d.pending[name] = self._deferred[key]
                d.deferred.append(name)
            else:
                d.pending[name] = "not computed"

    def _render_all(self, teaching: bool = True) -> None:
        with self._lock:
            self._collect()
            self._render_status()
            self._render_maps()
            if teaching:
                self._render_teaching()
            self.compute_button.layout.display = None if self.displayed.deferred else "none"

    def _render_status(self) -> None:
        s, d = self.session, self.displayed
        if d.random_weights:
            self.random_banner.value = f'<span style="color:#c00;font-weight:bold">{RANDOM_WEIGHTS_MARK}</span>'
            self.random_banner.layout.display = None
        else:
            self.random_banner.layout.display = "none"
        self.budget_note.value = " · ".join(
            f"{html.escape(name)}: {describe_budget(b)}" for name, b in d.budgets.items()
        )
        if s.spec is None or s.probabilities is None or s.target is None:
            self.status.value = ""
            return
        top_index, top_name, top_p = d.prediction[0]
        parts = [f"predicted: <b>{html.escape(top_name)}</b> (p = {top_p:.2f})"]
        if s.target != top_index:
            parts.append(
                f"explaining: <b>{html.escape(d.target_name)}</b> (p = {_p(float(s.probabilities[s.target]))})"
            )
        if s.label is not None:
            parts.append(f"label: {html.escape(class_name(s.spec.categories, s.label))}")
        if s.layer is not None:
            c, h, w = s.layers[s.layer]
            parts.append(f"layer {html.escape(s.layer)} ({c}×{h}×{w})")
        self.status.value = " · ".join(parts)

    def _render_maps(self) -> None:
        with self._lock:
            s, d = self.session, self.displayed
            if s.spec is None or s.inputs is None:
                self.maps_image.value = b""
                d.png = b""
                return
            cells = []
            for name in d.methods:
                if name in d.maps:
                    cells.append(Cell(name, saliency=d.maps[name], caption=d.results[name].describe()))
                else:
                    cells.append(Cell(name, text=d.errors.get(name) or d.pending.get(name, "")))
            image = to_display_image(s.inputs[0].detach().cpu().float(), s.spec.mean, s.spec.std)
            caption = ""
            if d.prediction:
                caption = f"predicted: {d.prediction[0][1]} ({d.prediction[0][2]:.2f})"
                if s.target is not None and s.target != d.prediction[0][0]:
                    caption += f"\nexplaining: {d.target_name}"
            fig = maps_figure(image, cells, opacity=d.opacity, input_caption=caption, random_weights=d.random_weights)
            d.png = png_bytes(fig)
            d.renders += 1
            self.maps_image.value = d.png

    def _render_teaching(self) -> None:
        s, d = self.session, self.displayed
        drawn = (s.model_key, s.image_key, *[(name, id(view)) for name, view in d.teaching.items()])
        if drawn == self._teaching_drawn:  # the same views: the picture on screen is already right
            return
        self._teaching_drawn = drawn
        self._teaching_views = tuple(d.teaching.values())  # kept alive, so that their ids in `drawn` stay theirs
        if not d.teaching or s.spec is None or s.inputs is None:
            self.teaching_notes.value = (
                "<i>Tick a method and wait for its map: here you will see which channels it used.</i>"
            )
            self.teaching_image.value = b""
            return
        notes = "".join(
            f"<p><b>{html.escape(name)}</b>: {html.escape(view.note)}</p>" for name, view in d.teaching.items()
        )
        self.teaching_notes.value = notes
        fig = teaching_figure(s.inputs, s.spec.mean, s.spec.std, d.teaching)
        self.teaching_image.value = png_bytes(fig)

    # ------------------------------------------------------------------------------------- messages
    def _clear_messages(self) -> None:
        with self._lock:
            self.displayed.messages = []
            self.displayed.level = "info"

    def _say(self, text: str, level: Level, detail: str | None = None) -> None:
        with self._lock:
            d = self.displayed
            d.messages.append(text)
            order = ("info", "warning", "error")
            if order.index(level) > order.index(d.level) or len(d.messages) == 1:
                d.level = level
            if detail:
                d.detail = detail

    def _show_messages(self) -> None:
        d = self.displayed
        if not d.messages:
            self.message.value = ""
            return
        colour = _COLOURS[d.level]
        body = "<br>".join(html.escape(m) for m in d.messages)
        self.message.value = f'<div style="color:{colour};max-width:900px">{body}</div>'


def _p(probability: float) -> str:
    """A probability for a label: two decimals, or scientific notation when smaller than 0.01."""
    return f"{probability:.2f}" if probability >= 0.01 else f"{probability:.1e}"
