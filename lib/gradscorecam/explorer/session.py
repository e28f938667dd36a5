"""The explorer's state without widgets: what is selected, what is loaded, and what has been computed.

:class:`Session` is the single place that touches models. The widget layer (:mod:`.widgets`) turns clicks
into calls here and draws what it returns, so every rule (which layer is the default, when a map is
recomputed, what a computation is estimated to cost) is testable without a browser.

Each ``select_*`` method changes the state only when it succeeds: a model that fails to load, an image
that cannot be read or a layer without a 4-D output raises and leaves the previous selection in place.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from PIL import Image
from torch import Tensor, nn

from ..errors import ClassIndexError, GradScoreCAMError, TargetLayerError
from ..explainers import METHODS, BaseCAM, feature_layers, make_explainer
from ..explainers.layers import LayerSpec
from ..explainers.scoring import Budget, check_budget
from .cache import LRUCache, ResultKey
from .compute import (
    MethodResult,
    ProgressCallback,
    class_probabilities,
    estimate_seconds,
    is_score_based,
    method_tag,
    prepare_image,
    run_method,
    stop_aware_progress,
    time_forward,
)
from .sources import ImageEntry, ImageFactory, ModelFactory, ModelLike, as_image_entry, as_model_like


class ExplainerFactory(Protocol):
    """The signature of :func:`gradscorecam.explainers.make_explainer`, the library's one factory."""

    def __call__(
        self,
        method: str,
        model: nn.Module,
        target_layer: LayerSpec,
        *,
        batch_size: int | None = ...,
        max_channels: Budget | None = ...,
        progress: Any = ...,
        overrides: Mapping[str, Mapping[str, Any]] | None = ...,
    ) -> BaseCAM: ...


DEFAULT_INPUT_SIZE = (224, 224)
#: Images per forward pass when measuring a model's speed for an estimate.
TIMING_BATCH = 8


def default_layer(spec: ModelLike, layers: Mapping[str, tuple[int, int, int]]) -> str:
    """The layer shown when none is chosen: the model's own target layer, or, when that one has no 4-D output
    at this input size, the last layer that has one (``layers`` lists those, in the model's order)."""
    return spec.target_layer if spec.target_layer in layers else list(layers)[-1]


class Session:
    """Selections, loaded models, inputs and the result cache of one explorer.

    Args:
        models: display name -> factory returning a :class:`~.sources.ModelLike` (or a ``build_model()``
            mapping). Each model is loaded once, when first selected.
        images: display name -> :class:`~.sources.ImageEntry`, a function returning a PIL image, or an image.
        methods: the methods offered, by name (default: the six of :data:`gradscorecam.METHODS`).
        options: per-method extra constructor options, e.g. ``{"SmoothGrad-CAM++": {"n_samples": 8}}``.
        max_channels: channel budget of the score-based methods: an int, ``"all"`` (every channel), or None
            (not given: each method's default, every channel for Score-CAM and 64 for Grad++ScoreCAM).
        batch_size: masked inputs per forward pass of the score-based methods (and of SmoothGrad-CAM++'s copies).
        factory: builds each explainer from its name and these common options: the library's
            :func:`~gradscorecam.explainers.make_explainer`, the same factory as the notebooks and the runner
            (tests wrap it to slow a method down or make it fail).
        cache_size: how many finished maps are kept.
        teaching_channels: how many channels the teaching view shows per method.
    """

    def __init__(
        self,
        models: Mapping[str, ModelFactory],
        images: Mapping[str, ImageEntry | ImageFactory | Image.Image] | None = None,
        *,
        methods: Sequence[str] = tuple(METHODS),
        options: Mapping[str, Mapping[str, Any]] | None = None,
        max_channels: Budget | None = None,
        batch_size: int = 32,
        cache_size: int = 64,
        teaching_channels: int = 6,
        factory: ExplainerFactory = make_explainer,
    ) -> None:
        if not models:
            raise ValueError("the explorer needs at least one model factory")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if isinstance(methods, (str, Mapping)):
            raise TypeError(f"methods must be a sequence of method names, e.g. {list(METHODS)[:2]}, got {methods!r}")
        unknown = [name for name in methods if name not in METHODS]
        if unknown and factory is make_explainer:
            raise ValueError(f"unknown methods {unknown}; the library's methods are {', '.join(METHODS)}")
        self.model_factories: dict[str, ModelFactory] = dict(models)
        self.images: dict[str, ImageEntry] = {key: as_image_entry(value) for key, value in (images or {}).items()}
        self.methods: tuple[str, ...] = tuple(methods)
        self.extra_options = {name: dict(opts) for name, opts in (options or {}).items()}
        self.factory = factory
        self.max_channels = max_channels
        self.batch_size = batch_size
        self.teaching_channels = teaching_channels
        self.results: LRUCache[MethodResult] = LRUCache(cache_size)
        #: how many times an explainer was run (a cache hit does not count): the tests' measure of recomputation
        self.explainer_calls = 0
        self._models: dict[str, ModelLike] = {}
        self._layers: dict[tuple[str, tuple[int, int]], dict[str, tuple[int, int, int]]] = {}
        self._inputs: LRUCache[tuple[Tensor, Tensor]] = LRUCache(16)
        self._pass_seconds: dict[tuple[str, tuple[int, ...], int], float] = {}
        # the selection
        self.model_key: str | None = None
        self.spec: ModelLike | None = None
        self.layers: dict[str, tuple[int, int, int]] = {}
        self.layer: str | None = None
        self.image_key: str | None = None
        self.picture: Image.Image | None = None
        self.label: int | None = None
        self.inputs: Tensor | None = None
        self.probabilities: Tensor | None = None
        self.target: int | None = None

    # ------------------------------------------------------------------------------------------ sources
    def add_model(self, key: str, factory: ModelFactory) -> None:
        """Offer another model (e.g. a model file loaded from the explorer); replaces one of the same name."""
        self.model_factories[key] = factory
        self._models.pop(key, None)

    def add_image(self, key: str, entry: ImageEntry | ImageFactory | Image.Image) -> None:
        """Offer another image (an upload, a folder's files).

        An image replacing another of the same name (``photo0.png`` of a second folder) is never served from
        the caches of the first: its inputs and maps are forgotten, and if it is shown it is loaded again on
        the next selection.
        """
        if key in self.images:
            self._inputs.discard_where(lambda cached: cached[1] == key)  # keys: (model, image)
            self.results.discard_where(lambda cached: cached.image == key)
            if self.image_key == key:
                self.image_key = None
        self.images[key] = as_image_entry(entry)

    def load_model(self, key: str) -> ModelLike:
        """The model called ``key``, loaded on first use and then kept."""
        if key not in self.model_factories:
            raise GradScoreCAMError(f"no model called {key!r}; choose one of {', '.join(self.model_factories)}.")
        if key not in self._models:
            spec = as_model_like(self.model_factories[key](), where=f"the factory of {key!r}")
            spec.model.eval()
            self._models[key] = spec
        return self._models[key]

    # ---------------------------------------------------------------------------------------- selection
    def select_model(self, key: str) -> list[str]:
        """Select a model: its layers, its default layer, and the current image through its transform.

        Returns notes for the user (e.g. the model's default layer has no 4-D output, so another was chosen).
        """
        spec = self.load_model(key)
        inputs = probabilities = None
        if self.picture is not None:
            inputs, probabilities = self._inputs_for(key, spec, self.image_key or "", self.picture)
        size = (inputs.shape[-2], inputs.shape[-1]) if inputs is not None else DEFAULT_INPUT_SIZE
        layers = self._layers_for(key, spec, size)
        layer = default_layer(spec, layers)
        notes: list[str] = []
        if layer != spec.target_layer:
            notes.append(
                f"{spec.name}: the default target layer {spec.target_layer!r} has no 4-D (B, C, h, w) output; "
                f"showing {layer!r}, the last layer that has one."
            )
        self.model_key, self.spec, self.layers, self.layer = key, spec, layers, layer
        self.inputs, self.probabilities = inputs, probabilities
        self.target = int(probabilities.argmax()) if probabilities is not None else None
        return notes

    def select_layer(self, name: str) -> None:
        """Select a target layer; it must be one with a 4-D output (:attr:`layers`)."""
        if name not in self.layers:
            raise TargetLayerError(
                f"layer {name!r} has no 4-D (B, C, h, w) output in {self.spec.name if self.spec else 'this model'}, "
                "so there is no map to explain there; choose one of the layers in the list."
            )
        self.layer = name

    def select_image(self, key: str) -> None:
        """Select an image: read it, put it through the model's transform, predict its classes."""
        if key not in self.images:
            raise GradScoreCAMError(f"no image called {key!r}.")
        entry = self.images[key]
        picture = entry.load()
        if not isinstance(picture, Image.Image):
            raise GradScoreCAMError(
                f"the loader of image {key!r} returned a {type(picture).__name__}, not a PIL image."
            )
        picture = picture.convert("RGB") if picture.mode != "RGB" else picture
        inputs = probabilities = None
        layers = self.layers
        if self.spec is not None and self.model_key is not None:
            inputs, probabilities = self._inputs_for(self.model_key, self.spec, key, picture)
            layers = self._layers_for(self.model_key, self.spec, (inputs.shape[-2], inputs.shape[-1]))
        self.image_key, self.picture, self.label = key, picture, entry.class_index
        self.inputs, self.probabilities = inputs, probabilities
        self.target = int(probabilities.argmax()) if probabilities is not None else None
        if layers is not self.layers:
            self.layers = layers
            if self.layer not in layers and self.spec is not None:
                self.layer = default_layer(self.spec, layers)

    def select_target(self, index: int) -> None:
        """Select the class to explain (an index into the model's outputs)."""
        if self.probabilities is None:
            raise GradScoreCAMError("choose a model and an image before a class.")
        if not 0 <= int(index) < len(self.probabilities):
            raise ClassIndexError(f"class {index} is out of range: the model has {len(self.probabilities)} classes.")
        self.target = int(index)

    @property
    def ready(self) -> bool:
        """Whether everything a map depends on is selected."""
        return None not in (self.spec, self.layer, self.inputs, self.target)

    def _inputs_for(
        self, model_key: str, spec: ModelLike, image_key: str, picture: Image.Image
    ) -> tuple[Tensor, Tensor]:
        def make() -> tuple[Tensor, Tensor]:
            inputs = prepare_image(spec, picture)
            return inputs, class_probabilities(spec.model, inputs)

        return self._inputs.get_or_compute((model_key, image_key), make)

    def _layers_for(self, key: str, spec: ModelLike, size: tuple[int, int]) -> dict[str, tuple[int, int, int]]:
        if (key, size) not in self._layers:
            layers = feature_layers(spec.model, size)
            if not layers:
                raise TargetLayerError(
                    f"{spec.name} has no layer with a 4-D (B, C, h, w) output; CAM methods need one."
                )
            self._layers[(key, size)] = layers
        return self._layers[(key, size)]

    @property
    def max_channels(self) -> Budget | None:
        """The channel budget given to the score-based methods: an int, ``"all"``, or None (each one's default)."""
        return self._max_channels

    @max_channels.setter
    def max_channels(self, value: Budget | None) -> None:
        check_budget(value)
        self._max_channels = value

    # ------------------------------------------------------------------------------------------ results
    def explainer(self, name: str, progress: ProgressCallback | None = None) -> BaseCAM:
        """Method ``name`` at the selected layer, built by :attr:`factory` with the current settings."""
        if self.spec is None or self.layer is None:
            raise GradScoreCAMError("choose a model and a layer first.")
        extra = self.extra_options.get(name)
        return self.factory(
            name, self.spec.model, self.layer, batch_size=self.batch_size, max_channels=self.max_channels,
            progress=progress, overrides={name: extra} if extra else None,
        )  # fmt: skip

    def options(self, name: str) -> dict[str, Any]:
        """The effective options method ``name`` runs with under the current settings, defaults included
        (the explainer's own ``options()``: e.g. ``max_channels`` 64 for Grad++ScoreCAM when none is given)."""
        return self.explainer(name).options()

    def is_score_based(self, name: str) -> bool:
        """Whether method ``name`` scores masked inputs (its time grows with the channels it scores); False for
        a method that cannot be built for this model (its computation fails at once, with the reason)."""
        try:
            return is_score_based(self.explainer(name))
        except GradScoreCAMError:
            return False

    def key(self, name: str) -> ResultKey:
        """The cache key of method ``name`` for the current selection."""
        if not self.ready:
            raise GradScoreCAMError("choose a model, a layer, an image and a class first.")
        try:
            tag = method_tag(name, self.options(name))
        except GradScoreCAMError as error:
            # Not buildable here (CAM on a network without a linear layer): computing it raises the same error,
            # which is then remembered under this key and shown in the method's panel.
            tag = f"{name} (cannot be built: {error})"
        return ResultKey(self.model_key, self.layer, self.image_key or "", int(self.target), tag)  # type: ignore[arg-type]

    def cached(self, name: str) -> MethodResult | None:
        """The finished result of method ``name`` for the current selection, if computed before."""
        return self.results.get(self.key(name))

    def estimate(self, name: str) -> float:
        """Estimated seconds for method ``name``; measures one forward pass per model and input size once."""
        assert self.spec is not None and self.inputs is not None and self.layer is not None
        explainer = self.explainer(name)
        channels = self.layers[self.layer][0]
        # Timing a full batch costs as much as scoring that many channels (13 s for ResNet50 at 32 on a busy
        # 2-core CPU); up to 8 images give the per-image cost well enough on a CPU, and on a GPU the estimate errs long.
        batch = min(self.batch_size, TIMING_BATCH) if is_score_based(explainer) else 1
        timing_key = (self.model_key or "", tuple(self.inputs.shape), batch)
        if timing_key not in self._pass_seconds:
            self._pass_seconds[timing_key] = time_forward(self.spec.model, self.inputs, batch)
        return estimate_seconds(explainer, channels, explainer.options(), self._pass_seconds[timing_key], batch)

    def compute(
        self,
        name: str,
        progress: ProgressCallback | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> MethodResult:
        """Run method ``name`` for the current selection and cache the result (only if it finishes).

        A score-based method reports its masked passes to ``progress`` and stops when ``should_stop()`` turns
        true (see :func:`~.compute.stop_aware_progress`).
        """
        key = self.key(name)
        assert self.inputs is not None
        explainer = self.explainer(name, progress=stop_aware_progress(progress, should_stop))
        self.explainer_calls += 1
        result = run_method(
            name, explainer, self.inputs, key.target, should_stop=should_stop, teaching_channels=self.teaching_channels
        )
        self.results.put(key, result)
        return result
