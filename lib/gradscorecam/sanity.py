"""Do the maps depend on the model? The model-parameter randomisation test of Adebayo et al. (NeurIPS 2018, Sec. 3).

>>> from gradscorecam.sanity import parameter_randomization, pass_table
>>> table = parameter_randomization(model, "Grad-CAM", images, target_layer="layer4")
>>> pass_table(table)          # does the map fall to the level of two unrelated images' maps?

The learnable layers are re-initialised step by step and every method explains the same images, for the same
classes, after each step; each step's map is compared with the trained model's map. A method whose maps
barely change although the weights are random (an edge detector) shows the input, not the model.

**Steps** (:func:`randomization_steps`). By default they follow the network's natural blocks, from the output
towards the input: the model's top-level children, with ``nn.Sequential`` / ``nn.ModuleList`` /
``nn.ModuleDict`` containers opened one level (a wrapper with a single parametrised child is looked into), every
resulting module that holds parameters is one *unit*, and a unit made of normalisation layers only (BatchNorm,
GroupNorm, LayerNorm, InstanceNorm) joins the unit before it (``conv1+bn1``). This gives

* ResNet-18/50 (torchvision): ``fc``, ``layer4.1``/``layer4.2`` … ``layer1.0`` (one step per residual block),
  ``conv1+bn1``: 10 steps for ResNet-18, 18 for ResNet-50; CIFAR ResNet-20: ``linear``, ``layer3.2`` …
  ``layer1.0``, ``conv1+bn1`` (11 steps);
* VGG16: ``classifier.6``, ``classifier.3``, ``classifier.0``, then every convolution ``features.28`` …
  ``features.0`` (16 steps, one per weight layer, as Adebayo et al. did for VGG); VGG16-BN joins each
  BatchNorm to its convolution;
* AlexNet: ``classifier.6``, ``classifier.4``, ``classifier.1``, ``features.10``, ``.8``, ``.6``, ``.3``,
  ``.0`` (8 steps);
* MobileNetV2 (torchvision): ``classifier.1``, ``features.18`` (the last 1×1 convolution) … ``features.0``
  (20 steps, one per inverted-residual block); the shared offline MobileNetV2: ``classifier``, ``head.0``,
  ``blocks.16`` … ``blocks.0``, ``stem``;
* any other ``nn.Module``: the same walk, which is the fallback. ``layers=`` replaces it: a list of module
  names (or tuples of names randomised together), in the order to randomise them, output first;
  :func:`coarse_steps` groups the deeper natural blocks into fewer steps.

**Re-initialisation** (:func:`randomize_`). Every module of a unit that has ``reset_parameters`` calls it (the
initialisation PyTorch gives a fresh layer: Kaiming-uniform convolutions and linear layers, BatchNorm γ = 1,
β = 0); a module with parameters of its own but no ``reset_parameters`` gets N(0, 0.01²) for each of them.
Unit j of the step list (j = 1 nearest the output) is re-initialised right after ``torch.manual_seed(seed + j)``
in both modes, so cascading step k and independent step k give unit k the same random weights. Everything
happens on one ``copy.deepcopy`` of the model: the user's model is only read, also when a call fails.

**BatchNorm running statistics** are reset with the layer (mean 0, variance 1, what ``reset_parameters``
does): a randomised layer is then the layer of a freshly built network. Keeping the trained statistics would
normalise a random convolution's output with the statistics of a different (trained) one, and recomputing them
on the images would make each map depend on which other images share the batch. The copy runs in eval mode.

**Explained class.** Each image's class is the *trained* model's top prediction (or ``targets``), kept fixed
through every step, as in Adebayo et al.: the question is whether the explanation of the same decision changes.

**Similarities** (:func:`map_similarity`), each step's map against the trained model's map of the same image:

* ``spearman``, ``spearman_abs``: Spearman rank correlation of the maps as the library returns them (ReLU,
  bilinear upsampling to the input size, min-max to [0, 1]); these maps are non-negative, so the two are equal
  here and both columns exist for Adebayo et al.'s table layout;
* ``spearman_raw``, ``spearman_abs_raw``: the same on the raw map before ReLU, upsampling and min-max (the
  linear combination Σ_k w_k A^k at the target layer's resolution, or a callable's output as returned); here
  the absolute value matters: a map whose sign flips has ``spearman_raw`` = −1 and ``spearman_abs_raw`` = 1;
* ``ssim``: ``skimage.metrics.structural_similarity(a, b, data_range=1)`` of the returned maps (7×7 uniform
  window, skimage's defaults);
* ``hog_pearson``: Pearson correlation of ``skimage.feature.hog`` features of the returned maps (9
  orientations, 8×8-pixel cells, 3×3-cell blocks, L2-Hys: skimage's defaults).

Two identical maps have similarity exactly 1 in every measure (also a constant map, which is the same
picture); a measure that is undefined (a correlation with a constant map, SSIM or HOG of a map smaller than
the window) is NaN, never a made-up number. Step 0 is the trained model against itself: 1 by construction.

**Reference level** (``mode == "reference"`` rows). The same similarities between the trained model's maps of
two *different* images (image i against image i + 1, cyclically): the level of "no longer related". A method
passes (:func:`pass_table`) when its mean similarity to the trained map is not above the upper end of the
reference's 95 % interval at some step of the cascade, and the map has changed at all (mean below 1).

**Cost.** One copy of the model for the whole call (cascading randomises it further at every step; independent
restores the unit it randomised), every method explains all images once per step, in chunks of
``image_batch``; the score-based methods take ``max_channels`` through ``explainer_options``.
"""

from __future__ import annotations

import copy
import math
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from scipy.stats import rankdata
from torch import Tensor, nn

from .explainers import METHODS, make_explainer
from .explainers.base import Targets, resolve_targets
from .explainers.layers import LayerSpec, resolve_target_layer
from .explainers.postprocess import finalize

#: A method of :data:`gradscorecam.METHODS` by name, or a function ``(model, images, targets) -> (B, H, W) maps``.
MethodSpec = str | Callable[[nn.Module, Tensor, Tensor], Any]
MODES = ("cascading", "independent")
#: Columns of the table, in order (``target``: the explained class).
COLUMNS = ("image_id", "method", "mode", "step", "layer", "target", "spearman", "spearman_abs", "ssim",
           "hog_pearson", "spearman_raw", "spearman_abs_raw")  # fmt: skip
SIMILARITIES = ("spearman", "spearman_abs", "ssim", "hog_pearson", "spearman_raw", "spearman_abs_raw")
NORM_LAYERS: tuple[type[nn.Module], ...] = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
CONTAINERS: tuple[type[nn.Module], ...] = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
#: Standard deviation of the normal initialisation of parameters whose module has no ``reset_parameters``.
FALLBACK_STD = 0.01


# ------------------------------------------------------------------------------------------ steps
@dataclass(frozen=True)
class Step:
    """One randomisation step: ``modules`` (names in ``model.named_modules()``) re-initialised together."""

    index: int  # 1 = nearest the output
    modules: tuple[str, ...]

    @property
    def label(self) -> str:
        return "+".join(self.modules)


def randomization_steps(model: nn.Module, layers: Sequence[str | Sequence[str]] | None = None) -> list[Step]:
    """The units to randomise, output first: the natural blocks (module docstring) or ``layers``.

    Raises ValueError naming the unknown module (and the default steps) when a name in ``layers`` is not in
    ``model.named_modules()`` or holds no parameters.
    """
    if layers is None:
        units = _natural_units(model)
        if not units:
            raise ValueError(f"{type(model).__name__} has no submodule with parameters: nothing to randomise.")
        return [Step(i, unit) for i, unit in enumerate(reversed(units), start=1)]
    if isinstance(layers, str):
        raise TypeError(f"layers must be a list of module names, e.g. [{layers!r}], not a single string.")
    modules = dict(model.named_modules())
    steps = []
    for i, entry in enumerate(layers, start=1):
        names = (entry,) if isinstance(entry, str) else tuple(entry)
        for name in names:
            if not name or name not in modules or not any(True for _ in modules[name].parameters()):
                default = ", ".join(s.label for s in randomization_steps(model))
                what = "holds no parameters" if name in modules and name else "is not a submodule"
                raise ValueError(
                    f"layers: {name!r} {what} of {type(model).__name__}; give names from model.named_modules() "
                    f"that hold parameters, e.g. the default steps: {default}."
                )
        steps.append(Step(i, names))
    if not steps:
        raise ValueError("layers is empty: give at least one module name, or None for the natural blocks.")
    return steps


def coarse_steps(model: nn.Module, n_steps: int, fine: int = 3) -> list[tuple[str, ...]]:
    """At most ``n_steps`` cascading steps, for ``layers=``: the first ``fine`` natural blocks (nearest the
    output) one by one, then the remaining blocks split, in order, into contiguous groups of near-equal size.

    Why: every step re-explains every image with every method, so a deep network on a CPU (MobileNetV2: 20
    blocks) costs 20 rounds of Score-CAM. Adebayo et al.'s curves change most over the first blocks, which stay
    single steps; the deeper blocks are randomised a group at a time. The cascade is the same, only sampled
    more coarsely. With ``n_steps`` at least the number of natural blocks the natural steps are returned.
    E.g. 11 blocks, ``n_steps=6``: 1, 1, 1, then 3, 3 and 2 blocks.
    """
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
        raise ValueError(f"n_steps must be a positive int, got {n_steps!r}.")
    natural = [step.modules for step in randomization_steps(model)]
    if n_steps >= len(natural):
        return natural
    fine = max(0, min(fine, n_steps - 1))
    rest, n_groups = natural[fine:], n_steps - fine
    size, extra = divmod(len(rest), n_groups)
    groups, start = [], 0
    for g in range(n_groups):
        stop = start + size + (1 if g < extra else 0)
        groups.append(sum(rest[start:stop], ()))
        start = stop
    return natural[:fine] + groups


def _natural_units(model: nn.Module, prefix: str = "") -> list[tuple[str, ...]]:
    """Units in forward (registration) order; see the module docstring for the rule."""
    children = [(f"{prefix}{n}", m) for n, m in model.named_children() if _has_params(m)]
    if (
        len(children) == 1
        and not isinstance(children[0][1], CONTAINERS)
        and any(True for _ in children[0][1].children())
    ):
        return _natural_units(children[0][1], children[0][0] + ".")  # a wrapper around the real network
    modules: list[tuple[str, nn.Module]] = []
    for name, module in children:
        if isinstance(module, CONTAINERS):
            modules += [(f"{name}.{n}", m) for n, m in module.named_children() if _has_params(m)]
        else:
            modules.append((name, module))
    units: list[tuple[str, ...]] = []
    for name, module in modules:
        only_norm = all(isinstance(m, NORM_LAYERS) for m in module.modules() if _has_params(m, recurse=False))
        if only_norm and units:
            units[-1] = (*units[-1], name)
        else:
            units.append((name,))
    return units


def _has_params(module: nn.Module, recurse: bool = True) -> bool:
    return any(True for _ in module.parameters(recurse=recurse))


def randomize_(model: nn.Module, step: Step, seed: int = 0) -> None:
    """Re-initialise the modules of ``step`` in place, right after ``torch.manual_seed(seed + step.index)``.

    ``reset_parameters`` where a module has it, else N(0, :data:`FALLBACK_STD`²) for its own parameters; the
    global RNG state is restored afterwards (``torch.random.fork_rng``), so the caller's random stream is untouched.
    """
    named = dict(model.named_modules())
    devices = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(seed + step.index)
        for name in step.modules:
            for module in named[name].modules():
                if hasattr(module, "reset_parameters") and callable(module.reset_parameters):
                    module.reset_parameters()
                else:
                    for parameter in module.parameters(recurse=False):
                        parameter.normal_(0.0, FALLBACK_STD)


# ------------------------------------------------------------------------------------------ similarities
def spearman(a: np.ndarray | Tensor, b: np.ndarray | Tensor) -> float:
    """Spearman rank correlation: the Pearson correlation of the ranks (ties get their average rank).

    1 for identical arrays (also constant ones), NaN when exactly one of them is constant.
    """
    a, b = _flat(a), _flat(b)
    if np.array_equal(a, b):
        return 1.0
    return _pearson(rankdata(a), rankdata(b))


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    x = np.asarray(x, dtype=float) - np.mean(x)
    y = np.asarray(y, dtype=float) - np.mean(y)
    denominator = math.sqrt(float(x @ x) * float(y @ y))
    return float(x @ y) / denominator if denominator > 0 else math.nan


def _flat(values: np.ndarray | Tensor) -> np.ndarray:
    if isinstance(values, Tensor):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=np.float64).ravel()


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """``skimage.metrics.structural_similarity(a, b, data_range=1)`` (maps in [0, 1]); 1 for identical maps,
    NaN for maps smaller than its 7×7 window."""
    from skimage.metrics import structural_similarity

    if np.array_equal(a, b):
        return 1.0
    if min(a.shape) < 7:
        return math.nan
    return float(structural_similarity(a, b, data_range=1.0))


def hog_pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of the two maps' ``skimage.feature.hog`` features (skimage's default cells and blocks).

    1 for identical maps, NaN when a map is too small for one 3×3 block of 8×8-pixel cells (24 px) or its
    HOG is constant (a constant map has no gradients).
    """
    from skimage.feature import hog

    if np.array_equal(a, b):
        return 1.0
    if min(a.shape) < 24:
        return math.nan
    return _pearson(hog(a), hog(b))


def map_similarity(final_a: np.ndarray, final_b: np.ndarray, raw_a: np.ndarray, raw_b: np.ndarray) -> dict[str, float]:
    """All similarities of one pair of maps (module docstring): returned maps ``final_*``, raw maps ``raw_*``."""
    return {
        "spearman": spearman(final_a, final_b),
        "spearman_abs": spearman(np.abs(final_a), np.abs(final_b)),
        "ssim": ssim(final_a, final_b),
        "hog_pearson": hog_pearson(final_a, final_b),
        "spearman_raw": spearman(raw_a, raw_b),
        "spearman_abs_raw": spearman(np.abs(raw_a), np.abs(raw_b)),
    }


# ------------------------------------------------------------------------------------------ the test
@dataclass
class RandomizationResult:
    """What :func:`run_randomization` computed.

    Attributes:
        table: the rows of :func:`parameter_randomization`.
        steps: the randomisation steps, output first.
        targets: (B,) the class explained for each image (the trained model's prediction unless given).
        maps: method -> (1 + steps, kept images, H, W) float32 returned maps of the first ``keep_maps`` images:
            index 0 the trained model, index k after step k (for the figure).
        skipped: method -> why it has no rows (a method not defined for this model, e.g. CAM on VGG16).
    """

    table: pd.DataFrame
    steps: list[Step]
    targets: Tensor
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def parameter_randomization(
    model: nn.Module,
    method: MethodSpec | Sequence[MethodSpec],
    images: Tensor,
    targets: Targets = None,
    *,
    target_layer: LayerSpec,
    mode: str = "cascading",
    layers: Sequence[str | Sequence[str]] | None = None,
    seed: int = 0,
    explainer_options: Mapping[str, Any] | None = None,
    image_ids: Sequence[str] | None = None,
    image_batch: int = 32,
) -> pd.DataFrame:
    """The model-parameter randomisation test: one row per image, method and step, plus the reference rows.

    Args:
        model: the trained classifier; never modified (a deep copy is randomised).
        method: a name of :data:`gradscorecam.METHODS`, a callable ``(model, images, targets) -> (B, H, W)``
            maps, or a list of these (one randomised copy serves all of them).
        images: (B, C, H, W) normalised images (moved to the model's device).
        targets: classes to explain; ``None``: each image's top class under the trained model.
        target_layer: the explainers' layer (a name or module of ``model``).
        mode: ``"cascading"`` (step k: units 1..k random) or ``"independent"`` (step k: unit k only).
        layers: module names to randomise, output first (default: the natural blocks, see the module docstring).
        seed: unit j is re-initialised after ``torch.manual_seed(seed + j)``.
        explainer_options: keyword arguments of :func:`~gradscorecam.explainers.make_explainer` (``batch_size``,
            ``max_channels``, ``smooth_samples``, ``seed``, ``overrides``, ...).
        image_ids: one id per image (default "0", "1", ...).
        image_batch: images per explainer call.

    Returns:
        columns :data:`COLUMNS`: step 0 is the trained model (similarity 1), step k compares after step k;
        rows with ``mode == "reference"`` compare two different images under the trained model (``layer``
        names the other image). Raises UnsupportedModelError for a method not defined for the model.
    """
    result = run_randomization(
        model, method, images, targets, target_layer=target_layer, mode=mode, layers=layers, seed=seed,
        explainer_options=explainer_options, image_ids=image_ids, image_batch=image_batch, keep_maps=0,
        skip_unsupported=False,
    )  # fmt: skip
    return result.table


def run_randomization(
    model: nn.Module,
    method: MethodSpec | Sequence[MethodSpec],
    images: Tensor,
    targets: Targets = None,
    *,
    target_layer: LayerSpec,
    mode: str = "cascading",
    layers: Sequence[str | Sequence[str]] | None = None,
    seed: int = 0,
    explainer_options: Mapping[str, Any] | None = None,
    image_ids: Sequence[str] | None = None,
    image_batch: int = 32,
    keep_maps: int = 0,
    skip_unsupported: bool = True,
    progress: Callable[[str], None] | None = None,
) -> RandomizationResult:
    """:func:`parameter_randomization` that also keeps the maps of the first ``keep_maps`` images (for the
    cascading figure) and, with ``skip_unsupported``, leaves out a method not defined for the model (noted in
    ``skipped``) instead of raising. ``progress`` is called with a line per step."""
    from .errors import UnsupportedModelError

    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(map(repr, MODES))}, not {mode!r}")
    methods = _method_list(method)
    if not isinstance(images, Tensor) or images.dim() != 4:
        raise ValueError("images must be a (B, C, H, W) tensor of normalised images (apply the model's transform).")
    ids = [str(i) for i in (image_ids if image_ids is not None else range(len(images)))]
    if len(ids) != len(images) or len(set(ids)) != len(ids):
        raise ValueError(f"image_ids must give {len(images)} distinct ids, one per image; got {len(ids)}.")
    if image_batch < 1:
        raise ValueError(f"image_batch must be at least 1, got {image_batch}")
    options = dict(explainer_options or {})
    # A module of the user's model is not a module of the copy: the copy is explained at the same name.
    layer_name, _ = resolve_target_layer(model, target_layer)
    try:
        work = copy.deepcopy(model)
    except Exception as error:  # noqa: BLE001 - the message says what is needed
        raise TypeError(
            f"parameter_randomization randomises a copy of the model, but copy.deepcopy failed: {error}"
        ) from error
    work.eval()
    steps = randomization_steps(work, layers)
    param = next(work.parameters(), None)
    images = images.to(param.device) if param is not None else images
    with torch.no_grad():
        logits = work(images[:image_batch]) if len(images) <= image_batch else torch.cat(
            [work(images[i:i + image_batch]) for i in range(0, len(images), image_batch)]
        )  # fmt: skip
    fixed = resolve_targets(targets, logits, len(images), logits.shape[1])
    size = (images.shape[-2], images.shape[-1])

    def explain_all(names: Sequence[tuple[str, MethodSpec]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        return {name: _explain(fn, work, images, fixed, layer_name, options, size, image_batch) for name, fn in names}

    # Step 0: the trained model (the copy, still trained).
    original: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    skipped: dict[str, str] = {}
    for name, fn in methods:
        try:
            original[name] = _explain(fn, work, images, fixed, layer_name, options, size, image_batch)
        except UnsupportedModelError as error:
            if not skip_unsupported:
                raise
            skipped[name] = str(error)
    active = [(n, f) for n, f in methods if n in original]
    rows: list[dict[str, Any]] = []
    kept = {n: [final[:keep_maps]] for n, (final, _) in original.items()}
    targets_list = fixed.tolist()
    for name in original:
        for i, image_id in enumerate(ids):
            rows.append({"image_id": image_id, "method": name, "mode": mode, "step": 0, "layer": "trained",
                         "target": targets_list[i], **dict.fromkeys(SIMILARITIES, 1.0)})  # fmt: skip
    rows += _reference_rows(original, ids, targets_list)
    saved: dict[str, dict[str, Tensor]] = {}
    for step in steps:
        if progress is not None:
            progress(f"step {step.index}/{len(steps)}: {mode} randomisation of {step.label}")
        if mode == "independent":
            named = dict(work.named_modules())
            saved = {n: {k: v.clone() for k, v in named[n].state_dict().items()} for n in step.modules}
        randomize_(work, step, seed)
        current = explain_all(active)
        if mode == "independent":
            for n, state in saved.items():
                named[n].load_state_dict(state)
        for name, (final, raw) in current.items():
            kept[name].append(final[:keep_maps])
            base_final, base_raw = original[name]
            for i, image_id in enumerate(ids):
                rows.append({"image_id": image_id, "method": name, "mode": mode, "step": step.index,
                             "layer": step.label, "target": targets_list[i],
                             **map_similarity(base_final[i], final[i], base_raw[i], raw[i])})  # fmt: skip
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    maps = {n: np.stack(v) for n, v in kept.items()} if keep_maps else {}
    return RandomizationResult(table, steps, fixed.cpu(), maps, skipped)


def _method_list(method: MethodSpec | Sequence[MethodSpec]) -> list[tuple[str, MethodSpec]]:
    entries = [method] if isinstance(method, str) or callable(method) else list(method)
    out: list[tuple[str, MethodSpec]] = []
    for entry in entries:
        if isinstance(entry, str):
            if entry not in METHODS:
                raise ValueError(
                    f"unknown method {entry!r}; choose from {', '.join(map(repr, METHODS))} or pass a callable"
                )
            out.append((entry, entry))
        elif callable(entry):
            out.append((getattr(entry, "__name__", type(entry).__name__), entry))
        else:
            raise TypeError(
                f"method must be a method name or a callable (model, images, targets) -> maps, not {entry!r}"
            )
    names = [n for n, _ in out]
    if len(set(names)) != len(names) or not names:
        raise ValueError(f"methods must be distinct and at least one, got {names}")
    return out


def _explain(method: MethodSpec, model: nn.Module, images: Tensor, targets: Tensor, target_layer: str,
             options: Mapping[str, Any], size: tuple[int, int], image_batch: int) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(returned maps (B, H, W) in [0, 1], raw maps (B, h, w)) as float32 numpy arrays."""
    finals, raws = [], []
    if isinstance(method, str):
        explainer = make_explainer(method, model, target_layer, **options)
    for start in range(0, len(images), image_batch):
        chunk, chunk_targets = images[start : start + image_batch], targets[start : start + image_batch]
        if isinstance(method, str):
            explanation = explainer.explain(chunk, chunk_targets)
            raw, final = explanation.maps, explanation.saliency(size)
        else:
            raw = torch.as_tensor(method(model, chunk, chunk_targets)).float()
            if raw.dim() != 3 or len(raw) != len(chunk):
                raise ValueError(f"the method callable must return (B, H, W) maps, got shape {tuple(raw.shape)}")
            final = finalize(raw, size)
        raws.append(raw.detach().float().cpu().numpy())
        finals.append(final.detach().float().cpu().numpy())
    return np.concatenate(finals), np.concatenate(raws)


def _reference_rows(original: Mapping[str, tuple[np.ndarray, np.ndarray]], ids: Sequence[str],
                    targets: Sequence[int]) -> list[dict[str, Any]]:  # fmt: skip
    """Image i against image i + 1 under the trained model (cyclic for three or more images)."""
    n = len(ids)
    pairs = [(i, (i + 1) % n) for i in range(n if n > 2 else n - 1)]
    rows = []
    for name, (final, raw) in original.items():
        for i, j in pairs:
            rows.append({"image_id": ids[i], "method": name, "mode": "reference", "step": 0,
                         "layer": f"trained, other image {ids[j]}", "target": targets[i],
                         **map_similarity(final[i], final[j], raw[i], raw[j])})  # fmt: skip
    return rows


# ------------------------------------------------------------------------------------------ summaries
def similarity_curves(table: pd.DataFrame, metrics: Sequence[str] = ("spearman", "ssim", "hog_pearson"),
                      confidence: float = 0.95, seed: int = 0) -> pd.DataFrame:  # fmt: skip
    """Mean similarity per method, mode and step, with a percentile-bootstrap interval over the images
    (:func:`gradscorecam.summary.mean_confidence_interval`, 2000 resamples, ``seed``), NaN values left out
    (``n`` says how many images count). Reference rows become ``mode == "reference"``, ``step`` -1."""
    from .summary import mean_confidence_interval

    rows = []
    table = table.assign(step=np.where(table["mode"] == "reference", -1, table["step"]))
    for (method, mode, step), part in table.groupby(["method", "mode", "step"], sort=False):
        for metric in metrics:
            values = pd.to_numeric(part[metric], errors="coerce").dropna().to_numpy(dtype=float)
            low, high = mean_confidence_interval(values, confidence, 2000, seed)
            rows.append({"method": method, "mode": mode, "step": int(step),
                         "layer": part["layer"].iloc[0] if mode != "reference" else "reference",
                         "metric": metric, "mean": values.mean() if len(values) else math.nan, "low": low,
                         "high": high, "n": len(values)})  # fmt: skip
    return pd.DataFrame(rows)


def pass_table(table: pd.DataFrame, metric: str = "spearman", confidence: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Which methods pass the cascading test on ``metric``: one row per method.

    A method **passes** when, at some step of the cascade, its mean similarity to the trained model's map is at
    most the upper end of the reference level's interval (two different images' maps under the trained model)
    and below 1: the explanation of the same decision became as unrelated to the trained one as another
    image's explanation is, so it depended on the learned weights. It **fails** when it never gets there, or
    never changes at all (a constant map equals itself, and its reference is 1 too). It also passes when every
    randomised map is blank (constant, so the correlations are undefined, NaN) while the trained ones were not:
    nothing of the trained map is left. "cannot tell" without a reference level (one image). A fully random network can still respond to
    the input's contrast, so the similarity may rise again in the last steps: ``last`` reports it.

    Columns: ``metric``, ``n`` (images), ``reference`` with ``reference_low``/``reference_high``, ``lowest``
    (the lowest mean over the steps) and ``lowest_step``, ``at_reference`` (the first step at the reference
    level, "" if none), ``last`` (the mean after the last step), ``verdict`` and ``reason``.
    """
    if "cascading" not in set(table["mode"]):
        raise ValueError("pass_table reads the cascading rows: run parameter_randomization with mode='cascading'.")
    curves = similarity_curves(table, [metric], confidence, seed)
    rows = []
    for method, part in curves.groupby("method", sort=False):
        cascade = part[(part["mode"] == "cascading") & (part["step"] > 0) & (part["n"] > 0)].sort_values("step")
        reference = part[part["mode"] == "reference"]
        ref = reference.iloc[0] if len(reference) else None
        ref_high = math.nan if ref is None else (ref["high"] if not math.isnan(ref["high"]) else ref["mean"])
        row: dict[str, Any] = {"method": method, "metric": metric, "n": int(part["n"].max()),
                               "reference": math.nan if ref is None else ref["mean"],
                               "reference_low": math.nan if ref is None else ref["low"], "reference_high": ref_high,
                               "lowest": math.nan, "lowest_step": "", "at_reference": "", "last": math.nan}  # fmt: skip
        if len(cascade):
            lowest = cascade.loc[cascade["mean"].idxmin()]
            falls = cascade[(cascade["mean"] <= ref_high) & (cascade["mean"] < 1 - 1e-6)]
            row.update(lowest=lowest["mean"], lowest_step=lowest["layer"], last=cascade["mean"].iloc[-1],
                       at_reference=falls["layer"].iloc[0] if len(falls) else "")  # fmt: skip
        blank = not len(cascade) and (part[(part["mode"] == "cascading") & (part["step"] > 0)]["n"] == 0).any()
        if blank:  # the trained map varied (else it would equal itself: 1), every randomised one is constant
            verdict, reason = (
                "passes",
                "every randomised map is blank (constant: no trace of the trained map; correlations undefined)",
            )
        elif not len(cascade) or math.isnan(ref_high):
            verdict, reason = (
                "cannot tell",
                "no reference level (one image)" if len(cascade) else "no defined similarity",
            )
        elif (cascade["mean"] >= 1 - 1e-6).all():
            verdict, reason = "fails", "the map did not change when the weights were randomised"
        elif row["at_reference"]:
            verdict, reason = "passes", f"at the level of two unrelated images' maps from step {row['at_reference']} on"
        else:
            verdict, reason = "fails", "always more similar to the trained map than two images' maps are"
        rows.append({**row, "verdict": verdict, "reason": reason})
    return pd.DataFrame(rows).set_index("method")


# ------------------------------------------------------------------------------------------ figures
def short_step_label(label: str, keep: int = 3) -> str:
    """A step's label for an axis: a group of more than ``keep`` modules (:func:`coarse_steps`) is shortened to its
    first and last module and their number, ``"blocks.16…stem (18)"``; the results table keeps the full label."""
    modules = label.split("+")
    return label if len(modules) <= keep else f"{modules[0]}…{modules[-1]} ({len(modules)})"


def cascade_figure(result: RandomizationResult, display_images: Sequence[np.ndarray], *, image_ids: Sequence[str] | None = None,
                   title: str | None = None, random_weights: bool = False, cell_size: float = 1.15) -> Figure:  # fmt: skip
    """Adebayo et al.'s cascading figure: per kept image, one row per method; the input, the trained model's map,
    then the map after each step (maps as returned, in [0, 1], drawn without the image under them so that an
    edge detector shows)."""
    from matplotlib import pyplot as plt

    from .plotting import finish_figure

    methods = list(result.maps)
    n_images = min(len(display_images), *(m.shape[1] for m in result.maps.values())) if methods else 0
    if not n_images:
        raise ValueError("no kept maps: run run_randomization with keep_maps >= 1 and at least one method.")
    columns = ["input", "trained"] + [short_step_label(s.label) for s in result.steps]
    rows = n_images * len(methods)
    fig, axes = plt.subplots(rows, len(columns), figsize=(cell_size * len(columns) + 1.2, cell_size * rows + 0.8),
                             squeeze=False)  # fmt: skip
    for k in range(n_images):
        for r, method in enumerate(methods):
            row = k * len(methods) + r
            for c in range(len(columns)):
                ax = axes[row, c]
                ax.set_xticks([])
                ax.set_yticks([])
                if c == 0:
                    if r == 0:
                        ax.imshow(display_images[k])
                        ax.set_title(image_ids[k] if image_ids is not None else f"image {k}", fontsize=7)
                    else:
                        ax.axis("off")
                    continue
                ax.imshow(result.maps[method][c - 1, k], cmap="viridis", vmin=0.0, vmax=1.0)
                if c == 1:
                    ax.set_ylabel(method, fontsize=7)
                if row == 0:
                    ax.set_title(textwrap.shorten(columns[c], 24, placeholder="…"), fontsize=6, rotation=45, ha="left")
    return finish_figure(fig, title, random_weights, fontsize=9)


def curves_figure(curves: pd.DataFrame, metrics: Sequence[str] = ("spearman", "ssim", "hog_pearson"), *,
                  mode: str = "cascading", title: str | None = None, random_weights: bool = False) -> Figure:  # fmt: skip
    """Mean similarity (line) and its interval (band) per method against the step, one panel per metric; the
    method's reference level (two different images' maps) as a dashed line of the same colour."""
    from matplotlib import pyplot as plt

    from .plotting import finish_figure

    fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 4.2), squeeze=False)
    colours = plt.get_cmap("tab10")
    for ax, metric in zip(axes[0], metrics, strict=True):
        part = curves[curves["metric"] == metric]
        labels: list[str] = []
        for c, (method, lines) in enumerate(part.groupby("method", sort=False)):
            line = lines[lines["mode"] == mode].sort_values("step")
            colour = colours(c % 10)
            ax.plot(line["step"], line["mean"], marker="o", ms=3, color=colour, label=method)
            ax.fill_between(line["step"], line["low"], line["high"], color=colour, alpha=0.15, lw=0)
            ref = lines[lines["mode"] == "reference"]
            if len(ref):
                ax.axhline(float(ref["mean"].iloc[0]), color=colour, ls="--", lw=1)
            if len(line) > len(labels):
                labels = [short_step_label(label) for label in line["layer"]]
        ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=6)
        ax.set_ylabel(f"{metric} to the trained model's map")
        ax.set_ylim(-0.3, 1.05)
        ax.axhline(0.0, color="0.6", lw=0.5)
        ax.set_title(f"{metric} ({mode}); dashed: reference level", fontsize=9)
    axes[0, 0].legend(fontsize=7)
    return finish_figure(fig, title, random_weights, fontsize=9)
