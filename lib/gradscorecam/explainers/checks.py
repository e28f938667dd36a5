"""Input checks shared by the explainers and the metrics (a bottom module: it imports nothing of the library
but its errors)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..errors import InputImageError


def check_finite(values: Tensor | np.ndarray, what: str) -> None:
    """Raise :class:`~gradscorecam.errors.InputImageError` if ``values`` hold NaN or ±inf, naming ``what``,
    the first bad image (index along the first axis) and how many values are bad.

    Without it a NaN pixel flows silently through a forward pass into a map of NaN (or, after min-max
    normalisation and ReLU, into a plausible-looking map) and into metrics that are NaN or meaningless.
    """
    if isinstance(values, Tensor):
        if not values.is_floating_point() and not values.is_complex():
            return
        bad = ~torch.isfinite(values.detach())
        if not bool(bad.any()):
            return
        count, first = int(bad.sum()), int(bad.reshape(len(bad), -1).any(1).nonzero()[0]) if bad.dim() else 0
        nan = bool(torch.isnan(values.detach()).any())
    else:
        array = np.asarray(values)
        if not np.issubdtype(array.dtype, np.inexact):
            return
        bad_array = ~np.isfinite(array)
        if not bad_array.any():
            return
        count = int(bad_array.sum())
        first = int(np.flatnonzero(bad_array.reshape(len(array), -1).any(1))[0]) if array.ndim else 0
        nan = bool(np.isnan(array).any())
    kind = "NaN" if nan else "infinite values"
    raise InputImageError(
        f"{what} hold {kind}: {count} value(s) are not finite, the first in item {first} (index along the batch "
        "axis). A CAM of such an input means nothing: check how the images were read and normalised (e.g. a "
        "division by a zero std, or a corrupt file) before explaining or scoring them."
    )
