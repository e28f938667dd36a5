"""Small torch helpers shared by every layer: the bottom of the library (it imports nothing of it).

* :func:`model_state_guard`: eval mode and frozen parameters for the duration of a call, the caller's state
  restored afterwards (every explainer and metric runs the model inside it).
* :func:`class_scores`: the score of each row's target class, softmax probability or logit.
* :func:`check_choice`: a clear ValueError for a misspelt option.
* :func:`synchronize` and :func:`resolve_device`: honest timing on CUDA, and ``"auto"`` device choice.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import torch
from torch import Tensor, nn

ScoreType = Literal["probability", "logit"]


@contextmanager
def model_state_guard(model: nn.Module) -> Iterator[None]:
    """Eval mode and frozen parameters inside the block; the caller's state restored on exit.

    Explanations are defined for the deployed (eval-mode) network: in train mode BatchNorm would mix
    the images of a batch and dropout would make every map random. Freezing parameters means autograd
    stores nothing for weight gradients, so no ``.grad`` can accumulate.
    """
    modes = [(m, m.training) for m in model.modules()]
    params = [(p, p.requires_grad, p.grad) for p in model.parameters()]
    try:
        model.eval()
        for p, _, _ in params:
            p.requires_grad_(False)
        yield
    finally:
        for m, mode in modes:
            m.training = mode
        for p, flag, grad in params:
            p.requires_grad_(flag)
            p.grad = grad


def check_choice(name: str, value: object, allowed: tuple[object, ...]) -> None:
    """Raise ValueError naming the allowed values when an option is misspelt."""
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not one of {', '.join(map(repr, allowed))}")


def class_scores(logits: Tensor, targets: Tensor, score: ScoreType) -> Tensor:
    """Score of each row's target class: softmax probability or raw logit."""
    values = torch.softmax(logits.float(), dim=1) if score == "probability" else logits.float()
    return values.gather(1, targets.view(-1, 1)).squeeze(1)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks the first GPU when there is one, else the CPU; anything else is checked and returned."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {str(device)!r} was asked for but PyTorch sees no CUDA GPU; use 'cpu' or 'auto'.")
    return resolved


def synchronize(device: str | torch.device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously), so a clock read after it is honest."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
