"""Models to explain: torchvision networks by name, or a user's own network from a Python file.

>>> spec = load_model("resnet50")                  # torchvision, default ImageNet weights (cached or downloaded)
>>> spec = load_model("vgg16", weights=None)       # random weights: spec.is_random, and every result says so
>>> spec = load_model("path/to/model.py")          # a file defining build_model() (see below)

A :class:`ModelSpec` carries everything the explainers, the metrics and the notebooks need: the model in
eval mode, its preprocessing transform, the default target layer, the category names, the normalisation
mean/std (to show images and to mask in pixel space), a display name and a ``weights`` tag.

**External models.** A ``.py`` file whose ``build_model()`` returns a mapping with the keys ``model``
(an ``nn.Module`` returning (B, num_classes) logits), ``transform`` (PIL image -> normalised (C, H, W)
tensor), ``target_layer`` (a name from ``model.named_modules()``), ``categories`` (num_classes names),
``mean`` and ``std`` (per channel, of the transform's normalisation) and ``name``. This is how a
medical-imaging CNN or a fine-tuned network is brought in. The mapping is checked (missing keys, a
target layer that does not exist, a category count that differs from the model's outputs on a test
image) and every problem raises :class:`~gradscorecam.errors.ModelSourceError` naming the file and key.

**Offline.** Pretrained torchvision weights are read from torch.hub's cache,
``$TORCH_HOME/hub/checkpoints`` (``torch.hub.get_dir()/checkpoints``). When the file is not there and cannot
be downloaded, :class:`~gradscorecam.errors.WeightsUnavailableError` names the file, the folder and how to
put it there. There is never a silent switch to random weights.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.util
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision
from PIL import Image
from torch import nn
from torchvision.models import WeightsEnum

from .errors import ModelSourceError, TargetLayerError, WeightsUnavailableError
from .explainers.layers import feature_layers, resolve_target_layer

EXTERNAL_KEYS = ("model", "transform", "target_layer", "categories", "mean", "std", "name")
#: Seed of the random initialisation with ``weights=None``, so that "random weights" is one fixed network.
RANDOM_WEIGHTS_SEED = 0
RANDOM_TAG = f"random (weights=None, torch seed {RANDOM_WEIGHTS_SEED})"


@dataclass(frozen=True, eq=False)
class ModelSpec:
    """A model with what is needed to explain it (see the module docstring).

    Attributes:
        model: the network, in eval mode, on the requested device.
        transform: PIL image -> normalised (C, H, W) float tensor.
        target_layer: default layer to explain, a name from ``model.named_modules()``.
        categories: the class names, in output order.
        mean, std: per-channel normalisation of ``transform``'s output.
        name: display name (the torchvision model name, or the external file's ``name``).
        weights: what the parameters are: a torchvision weights name (``"IMAGENET1K_V2"``),
            ``"random (weights=None, ...)"``, or ``"external: <absolute path of the file>"``.
    """

    model: nn.Module
    transform: Callable[[Image.Image], torch.Tensor]
    target_layer: str
    categories: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    name: str
    weights: str

    @property
    def is_random(self) -> bool:
        """True when the parameters are a random initialisation (``weights=None``): results mean nothing."""
        return self.weights.startswith("random")


def load_model(
    source: str | os.PathLike[str], weights: str | WeightsEnum | None = "DEFAULT", device: str | torch.device = "cpu"
) -> ModelSpec:
    """Load a torchvision model by name, or an external model from a ``.py`` file with ``build_model()``.

    Args:
        source: a name ``torchvision.models.get_model`` knows (``"resnet50"``, ``"vgg16"``, ``"alexnet"``,
            ...) or the path of a Python file.
        weights: torchvision only: ``"DEFAULT"``, a weights name (``"IMAGENET1K_V1"`` or
            ``"ResNet50_Weights.IMAGENET1K_V1"``) or enum member, or ``None`` for random weights (seeded, so
            always the same network; the transform and categories are then those of the default weights).
            External files bring their own weights and accept only the default.
        device: where to put the model.
    """
    text = os.fspath(source)
    if text.endswith(".py") or Path(text).is_file():
        if weights != "DEFAULT":
            raise ModelSourceError(
                f"weights={weights!r} applies to torchvision models only; {text} builds its own weights in build_model()."
            )
        spec = _load_external(Path(text))
    else:
        spec = _load_torchvision(text, weights)
    spec.model.to(device).eval()
    return spec


def default_target_layer(model_name: str, model: nn.Module) -> str:
    """The layer a CAM explanation of this model uses by default.

    * ResNet family (``resnet*``, ``resnext*``, ``wide_resnet*``): ``layer4``, the last residual stage,
      directly before global average pooling (CAM is defined there; Grad-CAM's and Score-CAM's choice).
    * VGG and AlexNet: the last ``ReLU`` of ``features`` (VGG16: ``features.29``, AlexNet: ``features.11``),
      the rectified output of the last convolution, before the final max-pool halves the resolution
      (14 x 14 -> 7 x 7, 13 x 13 -> 6 x 6). It is "the last convolutional layer" of Grad-CAM and the layer
      the Score-CAM authors' code uses (``features_29``, ``features_11``).
    * Any other network: the outermost module that finishes last, in one forward pass of a zero 224 x 224
      image, among those whose output is a (B, C, h, w) map with h·w > 1, i.e. the last feature map before
      pooling (``features`` for MobileNet/EfficientNet/DenseNet/ConvNeXt). Raises TargetLayerError if the
      model has none (e.g. a vision transformer).
    """
    modules = dict(model.named_modules())
    family = model_name.lower()
    if family.startswith(("resnet", "resnext", "wide_resnet")) and "layer4" in modules:
        return "layer4"
    if family.startswith(("vgg", "alexnet")) and isinstance(modules.get("features"), nn.Sequential):
        relus = [name for name, m in modules["features"].named_children() if isinstance(m, nn.ReLU)]
        if relus:
            return f"features.{relus[-1]}"
    return _last_feature_map(model)


# ------------------------------------------------------------------------------------------- torchvision
def _load_torchvision(name: str, weights: str | WeightsEnum | None) -> ModelSpec:
    known = torchvision.models.list_models(module=torchvision.models)
    if name not in known:
        close = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ModelSourceError(
            f"{name!r} is neither a file nor a torchvision classification model.{hint} "
            "See torchvision.models.list_models(module=torchvision.models)."
        )
    enum = torchvision.models.get_model_weights(name)
    default = enum.DEFAULT
    chosen = None if weights is None else _resolve_weights(name, enum, weights)
    if chosen is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_WEIGHTS_SEED)
            model = torchvision.models.get_model(name, weights=None)
        tag, meta = RANDOM_TAG, default
    else:
        ensure_checkpoint(chosen, name)
        model = torchvision.models.get_model(name, weights=chosen)
        tag, meta = chosen.name, chosen
    model.eval()
    transform = meta.transforms()
    return ModelSpec(
        model=model,
        transform=transform,
        target_layer=default_target_layer(name, model),
        categories=tuple(meta.meta["categories"]),
        mean=tuple(float(v) for v in transform.mean),
        std=tuple(float(v) for v in transform.std),
        name=name,
        weights=tag,
    )


def _resolve_weights(name: str, enum: type[WeightsEnum], weights: str | WeightsEnum) -> WeightsEnum:
    if isinstance(weights, WeightsEnum):
        if not isinstance(weights, enum):
            raise ModelSourceError(f"{weights} are weights of another model than {name} ({enum.__name__}).")
        return weights
    member = str(weights).split(".")[-1]
    try:
        return enum[member]
    except KeyError:
        options = ", ".join(["DEFAULT", *enum.__members__])
        raise ModelSourceError(f"{name} has no weights {weights!r}; choose one of {options}, or None.") from None


def checkpoint_path(weights: WeightsEnum) -> Path:
    """Where torch.hub keeps (and torchvision looks for) the file of these weights."""
    filename = os.path.basename(urlparse(weights.url).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def ensure_checkpoint(weights: WeightsEnum, model_name: str = "the model") -> Path:
    """Make sure the weights file is in torch.hub's cache: download it if needed, else WeightsUnavailableError."""
    path = checkpoint_path(weights)
    if path.is_file():
        return path
    match = torch.hub.HASH_REGEX.search(path.name)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(weights.url, str(path), match.group(1) if match else None, progress=True)
    except Exception as error:  # URLError, timeouts, HTTP errors, a hash mismatch: all mean "not available"
        raise WeightsUnavailableError(
            f"the pretrained weights {type(weights).__name__}.{weights.name} of {model_name} are not cached and "
            f"could not be downloaded ({type(error).__name__}: {error}). torchvision looks for the file "
            f"{path.name} in {path.parent} (that is $TORCH_HOME/hub/checkpoints; TORCH_HOME defaults to "
            f"~/.cache/torch). Download {weights.url} on a machine with internet access and copy it into that "
            "folder (or set TORCH_HOME to a folder whose hub/checkpoints holds it). Random weights are never "
            "used instead; pass weights=None if you want them (results are then marked as random)."
        ) from error
    return path


def _last_feature_map(model: nn.Module, size: int = 224) -> str:
    maps = [name for name, (_, h, w) in feature_layers(model, (size, size), in_finish_order=True).items() if h * w > 1]
    if not maps:
        raise TargetLayerError(
            f"{type(model).__name__} has no layer with a (B, C, h, w) output larger than 1 x 1; CAM methods need a CNN."
        )
    return maps[-1]


# ---------------------------------------------------------------------------------------------- external
def _load_external(path: Path) -> ModelSpec:
    if not path.is_file():
        raise ModelSourceError(f"model file not found: {path}")
    path = path.resolve()
    module_name = "gradscorecam_external_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
    try:
        import_spec = importlib.util.spec_from_file_location(module_name, path)
        if import_spec is None or import_spec.loader is None:
            raise ImportError("not a Python file")
        module = importlib.util.module_from_spec(import_spec)
        sys.modules[module_name] = module  # dataclasses and pickling inside the file need it registered
        import_spec.loader.exec_module(module)
    except Exception as error:
        sys.modules.pop(module_name, None)
        raise ModelSourceError(f"{path}: importing it failed ({type(error).__name__}: {error})") from error
    build = getattr(module, "build_model", None)
    if not callable(build):
        raise ModelSourceError(
            f"{path} defines no build_model() function; it must return a mapping with {EXTERNAL_KEYS}."
        )
    try:
        built = build()
    except Exception as error:
        raise ModelSourceError(f"{path}: build_model() raised {type(error).__name__}: {error}") from error
    return _validate_external(path, built)


def _validate_external(path: Path, built: object) -> ModelSpec:
    where = f"{path}: build_model()"
    if not isinstance(built, Mapping):
        raise ModelSourceError(
            f"{where} returned {type(built).__name__}, not a mapping (dict) with keys {EXTERNAL_KEYS}."
        )
    missing = [key for key in EXTERNAL_KEYS if key not in built]
    if missing:
        raise ModelSourceError(
            f"{where} is missing the key(s) {', '.join(map(repr, missing))} (needs {EXTERNAL_KEYS})."
        )
    model, transform = built["model"], built["transform"]
    if not isinstance(model, nn.Module):
        raise ModelSourceError(f"{where}['model'] is a {type(model).__name__}, not a torch.nn.Module.")
    if not callable(transform):
        raise ModelSourceError(f"{where}['transform'] is not callable (it must map a PIL image to a tensor).")
    try:
        layer_name, _ = resolve_target_layer(model, built["target_layer"])
    except TargetLayerError as error:
        raise ModelSourceError(f"{where}['target_layer']: {error}") from error
    name = built["name"]
    if not isinstance(name, str) or not name:
        raise ModelSourceError(f"{where}['name'] must be a non-empty string, got {name!r}.")
    categories = built["categories"]
    if (
        isinstance(categories, str)
        or not isinstance(categories, Sequence)
        or not all(isinstance(c, str) for c in categories)
    ):
        raise ModelSourceError(f"{where}['categories'] must be a list of class names (str).")
    channels, outputs = _probe(where, model, transform)
    if len(categories) != outputs:
        raise ModelSourceError(
            f"{where}['categories'] has {len(categories)} names but the model gives {outputs} outputs on a test image."
        )
    mean, std = (
        _channel_values(where, "mean", built["mean"], channels),
        _channel_values(where, "std", built["std"], channels),
    )
    if min(std) <= 0:
        raise ModelSourceError(f"{where}['std'] must be positive, got {std}.")
    model.eval()
    return ModelSpec(model, transform, layer_name, tuple(categories), mean, std, name, f"external: {path}")


def _probe(where: str, model: nn.Module, transform: Callable) -> tuple[int, int]:
    """Run the transform and the model on a grey 256 x 256 test image: (input channels, number of outputs)."""
    image = Image.new("RGB", (256, 256), (128, 128, 128))
    try:
        tensor = transform(image)
    except Exception as error:
        raise ModelSourceError(f"{where}['transform'] failed on a 256 x 256 RGB test image: {error}") from error
    if not isinstance(tensor, torch.Tensor) or tensor.dim() != 3:
        raise ModelSourceError(f"{where}['transform'] must return a (C, H, W) tensor, got {type(tensor).__name__}.")
    was_training = model.training
    try:
        model.eval()
        param = next(model.parameters(), None)
        with torch.no_grad():
            logits = model(tensor[None].to(param.device if param is not None else "cpu"))
    except Exception as error:
        raise ModelSourceError(f"{where}['model'] failed on the transformed test image: {error}") from error
    finally:
        model.train(was_training)
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        raise ModelSourceError(
            f"{where}['model'] must return (B, num_classes) logits, got {getattr(logits, 'shape', logits)}."
        )
    return tensor.shape[0], logits.shape[1]


def _channel_values(where: str, key: str, values: object, channels: int) -> tuple[float, ...]:
    try:
        if not isinstance(values, Iterable):
            raise TypeError  # reported below, as a value that is not a number is
        result = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ModelSourceError(f"{where}[{key!r}] must be {channels} numbers, got {values!r}.") from None
    if len(result) != channels:
        raise ModelSourceError(
            f"{where}[{key!r}] has {len(result)} values but the transform gives {channels} channels."
        )
    return result
