"""What the explorer explains: models and images, given to it as factories so nothing loads before it is chosen.

The explorer never imports a model zoo or an image source itself. It takes

* ``models``: display name -> a function returning a :class:`ModelLike` (``gradscorecam.models.ModelSpec``
  has this shape, and so does the mapping an external model file's ``build_model()`` returns);
* ``images``: display name -> a function returning a PIL image, or an :class:`ImageEntry` that also knows
  the image's labelled class.

Factories keep a classroom session fast (a network loads only when someone picks it), and tests can hand in
a tiny random network and generated pictures. The functions at the end wire in ``gradscorecam.models`` and
``gradscorecam.datasets``.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from PIL import Image, UnidentifiedImageError
from torch import Tensor, nn

from ..datasets.records import IMAGE_EXTENSIONS, load_rgb
from ..errors import DataSourceError, GradScoreCAMError
from ..models import EXTERNAL_KEYS

#: The models :meth:`Explorer.default` offers: the paper's networks (VGG16, AlexNet) and ResNet50, where CAM applies.
DEFAULT_MODEL_NAMES: tuple[str, ...] = ("resnet50", "vgg16", "alexnet")
#: A folder can hold 50 000 ImageNet images; a dropdown cannot. Only the first ones (sorted) are listed.
MAX_FOLDER_IMAGES = 500


@runtime_checkable
class ModelLike(Protocol):
    """A classifier with what it takes to explain it (``gradscorecam.models.ModelSpec`` is one).

    Read-only properties, so that frozen dataclasses satisfy it. ``is_random`` is optional: when an object
    has it and it is true, every figure is stamped "random weights — pipeline check only".
    """

    @property
    def model(self) -> nn.Module: ...
    @property
    def transform(self) -> Callable[[Image.Image], Tensor]: ...
    @property
    def target_layer(self) -> str: ...
    @property
    def categories(self) -> Sequence[str]: ...
    @property
    def mean(self) -> Sequence[float]: ...
    @property
    def std(self) -> Sequence[float]: ...
    @property
    def name(self) -> str: ...


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A :class:`ModelLike` made from a ``build_model()`` mapping (see :func:`as_model_like`)."""

    model: nn.Module
    transform: Callable[[Image.Image], Tensor]
    target_layer: str
    categories: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    name: str
    is_random: bool = False


ModelFactory = Callable[[], "ModelLike | Mapping[str, Any]"]


def as_model_like(obj: object, where: str = "the model factory") -> ModelLike:
    """Accept a :class:`ModelLike` or the mapping an external model file's ``build_model()`` returns.

    Raises :class:`~gradscorecam.errors.GradScoreCAMError` naming the missing attributes, so a broken model
    file shows as a message in the explorer instead of a traceback.
    """
    if isinstance(obj, Mapping):
        missing = [key for key in EXTERNAL_KEYS if key not in obj]
        if missing:
            raise GradScoreCAMError(
                f"{where} returned a mapping without {', '.join(missing)}; it needs the keys {', '.join(EXTERNAL_KEYS)}."
            )
        return LoadedModel(
            model=obj["model"],
            transform=obj["transform"],
            target_layer=str(obj["target_layer"]),
            categories=tuple(str(c) for c in obj["categories"]),
            mean=tuple(float(v) for v in obj["mean"]),
            std=tuple(float(v) for v in obj["std"]),
            name=str(obj["name"]),
            is_random=bool(obj.get("is_random", False)),
        )
    missing = [key for key in EXTERNAL_KEYS if not hasattr(obj, key)]
    if missing:
        raise GradScoreCAMError(
            f"{where} returned a {type(obj).__name__} without {', '.join(missing)}; "
            f"return an object or mapping with {', '.join(EXTERNAL_KEYS)}."
        )
    if not isinstance(obj.model, nn.Module):  # type: ignore[attr-defined]
        raise GradScoreCAMError(f"{where}: 'model' is a {type(obj.model).__name__}, not a torch.nn.Module.")  # type: ignore[attr-defined]
    return obj  # type: ignore[return-value]


def is_random(spec: object) -> bool:
    """Whether a model's weights are a random initialisation (its results must not be read as results)."""
    return bool(getattr(spec, "is_random", False))


@dataclass(frozen=True)
class ImageEntry:
    """An image the explorer can show: how to load it and, where known, the class it is labelled with.

    ``load`` returns a PIL image (any mode; it is converted to RGB) or raises
    :class:`~gradscorecam.errors.DataSourceError` naming the file when it cannot be read.
    """

    load: Callable[[], Image.Image]
    class_index: int | None = None


ImageFactory = Callable[[], Image.Image]


def as_image_entry(value: ImageEntry | ImageFactory | Image.Image) -> ImageEntry:
    """Normalise what the ``images`` mapping may hold (an entry, a function, or a PIL image) to an entry."""
    if isinstance(value, ImageEntry):
        return value
    if isinstance(value, Image.Image):
        picture = value
        return ImageEntry(lambda: picture)
    if callable(value):
        return ImageEntry(value)
    raise TypeError(
        f"an image must be an ImageEntry, a function returning a PIL image, or a PIL image, not {type(value).__name__}"
    )


def decode_image_bytes(content: bytes, name: str = "the uploaded file") -> Image.Image:
    """Decode image file bytes (an upload) to an RGB PIL image; DataSourceError naming the file if it is not one."""
    try:
        with Image.open(io.BytesIO(content)) as image:
            image.load()  # decode now, so a truncated file fails here rather than later in the transform
            return image.convert("RGB")
    except UnidentifiedImageError as error:
        raise DataSourceError(
            f"cannot read {name}: it is not an image file PIL can decode; upload a JPEG or PNG photograph."
        ) from error
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise DataSourceError(f"cannot read {name} as an image ({type(error).__name__}: {error}).") from error


def uploaded_files(value: object) -> list[tuple[str, bytes]]:
    """``(name, content)`` of each file in a ``FileUpload.value``, for ipywidgets 8 and 7 alike.

    ipywidgets 8 gives a tuple of dicts with ``name`` and ``content`` (a memoryview); ipywidgets 7 gave a
    dict ``{name: {"content": bytes, "metadata": {...}}}``.
    """
    files: list[tuple[str, bytes]] = []
    if isinstance(value, Mapping):  # ipywidgets 7
        for name, item in value.items():
            files.append((str(name), bytes(item["content"])))
    else:
        for item in value if isinstance(value, Iterable) else ():
            files.append((str(item.get("name", "upload")), bytes(item["content"])))
    return files


def upload_key(name: str, content: bytes) -> str:
    """The dropdown name of an uploaded image: its file name and a short content hash.

    The hash keeps two different files called ``image.png`` apart in the result cache.
    """
    return f"upload: {name} ({hashlib.sha1(content).hexdigest()[:8]})"


def folder_images(folder: str | os.PathLike[str], limit: int = MAX_FOLDER_IMAGES) -> dict[str, ImageEntry]:
    """Every image file in ``folder`` (sorted, at most ``limit``), without labels; loading goes through PIL."""
    root = Path(folder)
    if not root.is_dir():
        raise DataSourceError(f"image folder not found: {root}")
    files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise DataSourceError(f"{root} holds no image files ({', '.join(IMAGE_EXTENSIONS)}).")
    return {p.name: ImageEntry(_record_loader(p)) for p in files[:limit]}


# ------------------------------------------------------------------------------- wiring of the library's sources
def library_model_factories(
    names: Sequence[str] = DEFAULT_MODEL_NAMES,
    *,
    model_file: str | os.PathLike[str] | None = None,
    weights: str | None = "DEFAULT",
    device: str = "cpu",
) -> dict[str, ModelFactory]:
    """Factories calling ``gradscorecam.models.load_model`` (imported when a model is first chosen).

    ``model_file`` (a ``.py`` file with ``build_model()``) comes first, under the name ``file: <name>``.
    """
    factories: dict[str, ModelFactory] = {}
    if model_file is not None:
        factories[f"file: {Path(model_file).name}"] = model_file_factory(model_file, device=device)
    for name in names:
        factories[name] = _torchvision_factory(name, weights, device)
    return factories


def _torchvision_factory(name: str, weights: str | None, device: str) -> ModelFactory:
    def load() -> ModelLike:
        from ..models import load_model

        return load_model(name, weights=weights, device=device)

    return load


def model_file_factory(path: str | os.PathLike[str], *, device: str = "cpu") -> ModelFactory:
    """A factory loading an external model file through ``gradscorecam.models.load_model(path)``."""
    text = os.fspath(path)

    def load() -> ModelLike:
        from ..models import load_model

        return load_model(text, device=device)

    return load


def library_images(source: str | os.PathLike[str] = "builtin") -> dict[str, ImageEntry]:
    """Images from ``gradscorecam.datasets``: ``"builtin"``, a labels CSV, or a folder.

    A folder with a ``labels.csv`` is read through it (the labels become the images' classes); any other
    folder is listed as it is, without labels. Images are read with ``gradscorecam.datasets.load_rgb``.
    """
    from .. import datasets

    text = os.fspath(source)
    if text == "builtin":
        records = datasets.builtin_images()
    else:
        path = Path(text).expanduser()
        if path.is_dir() and (path / "labels.csv").is_file():
            records = datasets.labels_csv(path / "labels.csv")
        elif path.is_dir():
            return folder_images(path)
        elif path.suffix.lower() == ".csv":
            records = datasets.labels_csv(path)
        else:
            raise DataSourceError(f"image source {text!r} is neither 'builtin', a labels CSV nor a folder.")
    return {
        str(record.image_id): ImageEntry(_record_loader(Path(record.path)), int(record.class_index))
        for record in records[:MAX_FOLDER_IMAGES]
    }


def _record_loader(path: Path) -> ImageFactory:
    return lambda: load_rgb(path)
