"""The one place that turns a user's ``targets`` into class indices, for the explainers and the metrics.

Accepted: ``None`` (each image's top class), one integer (every image), or one integer per image, where an
integer is a Python ``int``, a NumPy integer, or a 0-d / one-element integer array or tensor, and "one per
image" is a sequence of those, an integer NumPy array or an integer tensor. Rejected with
:class:`~gradscorecam.errors.ClassIndexError`: floats (``3.0`` too: truncating would explain a class the
caller may not have meant), booleans (``True`` is not class 1), strings, a count that is neither 1 nor the
batch size, and indices outside ``0 .. num_classes - 1``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torch import Tensor

from ..errors import ClassIndexError

Targets = int | np.integer | Sequence[int] | np.ndarray | Tensor | None

_FIX = "pass class indices as ints (e.g. targets=[281, 207]) or an integer tensor/array."


def class_indices(targets: Targets, batch: int) -> Tensor | None:
    """``targets`` as a (``batch``,) long CPU tensor, or None for ``None``; one index is repeated for every image.

    Checks types and the count, not the range (that needs the model's class count: :func:`check_class_range`).
    """
    if targets is None:
        return None
    if isinstance(targets, Tensor | np.ndarray):
        values = _integer_array(targets)
    elif _is_integer(targets):
        values = torch.tensor([int(targets)], dtype=torch.long)  # type: ignore[arg-type]
    elif isinstance(targets, str | bytes) or not isinstance(targets, Iterable):
        raise ClassIndexError(f"targets must be None, an int or one int per image, got {targets!r}; {_FIX}")
    else:
        items = list(targets)
        bad = [t for t in items if not _is_integer(t)]
        if bad:
            raise ClassIndexError(
                f"targets must be integer class indices, got {bad[0]!r} ({type(bad[0]).__name__}); {_FIX}"
            )
        values = torch.tensor([int(t) for t in items], dtype=torch.long)
    if values.numel() == 1 and batch > 1:
        values = values.expand(batch).clone()
    if values.numel() != batch:
        raise ClassIndexError(f"got {values.numel()} targets for {batch} images; give one class per image, or one int.")
    return values


def check_class_range(targets: Tensor, num_classes: int) -> None:
    """Raise :class:`ClassIndexError` naming the first index outside ``0 .. num_classes - 1``."""
    bad = targets[(targets < 0) | (targets >= num_classes)]
    if len(bad):
        raise ClassIndexError(
            f"class index {int(bad[0])} is out of range: the model has {num_classes} classes "
            f"(valid indices 0..{num_classes - 1})."
        )


def resolve_targets(targets: Targets, logits: Tensor, batch: int, num_classes: int) -> Tensor:
    """(B,) long tensor on ``logits.device``: ``targets`` checked (module docstring); None gives ``logits.argmax(1)``."""
    resolved = class_indices(targets, batch)
    if resolved is None:
        return logits.argmax(dim=1)
    check_class_range(resolved, num_classes)
    return resolved.to(logits.device)


def _is_integer(value: object) -> bool:
    """A Python/NumPy integer (not a bool), or a one-element integer array or tensor."""
    if isinstance(value, bool | np.bool_):
        return False
    if isinstance(value, int | np.integer):
        return True
    if isinstance(value, np.ndarray):
        return value.size == 1 and _integer_dtype(value)
    if isinstance(value, Tensor):
        return value.numel() == 1 and _integer_dtype(value)
    return False


def _integer_dtype(values: Tensor | np.ndarray) -> bool:
    if isinstance(values, Tensor):
        return not (values.dtype == torch.bool or values.is_floating_point() or values.is_complex())
    return values.dtype.kind in "iu"


def _integer_array(values: Tensor | np.ndarray) -> Tensor:
    if not _integer_dtype(values):
        raise ClassIndexError(f"targets must be integer class indices, got an array of dtype {values.dtype}; {_FIX}")
    if isinstance(values, np.ndarray):
        return torch.from_numpy(values.astype(np.int64)).reshape(-1)
    return values.detach().to(device="cpu", dtype=torch.long).reshape(-1)
