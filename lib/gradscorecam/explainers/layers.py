"""Finding the target layer of a model by name or by module, and listing candidate layers."""

from __future__ import annotations

import difflib
from collections.abc import Callable

import torch
from torch import nn

from ..errors import TargetLayerError

LayerSpec = str | nn.Module


def resolve_target_layer(model: nn.Module, target_layer: LayerSpec) -> tuple[str, nn.Module]:
    """Return ``(name, module)`` for a layer given by its name in ``model.named_modules()`` or as a module.

    Raises :class:`TargetLayerError` naming the closest existing layer names when the name is unknown.
    """
    modules = dict(model.named_modules())
    if isinstance(target_layer, str):
        if target_layer and target_layer in modules:
            return target_layer, modules[target_layer]
        names = [n for n in modules if n]
        close = difflib.get_close_matches(target_layer, names, n=5, cutoff=0.5)
        if not close:  # fall back to the layers a user most often means: the last few
            close = names[-5:]
        raise TargetLayerError(
            f"no layer named {target_layer!r} in {type(model).__name__}; closest names: "
            f"{', '.join(map(repr, close))}. Pass a name from model.named_modules() "
            f"(list them with gradscorecam.feature_layers(model))."
        )
    if isinstance(target_layer, nn.Module):
        for name, module in modules.items():
            if module is target_layer:
                if not name:
                    raise TargetLayerError(
                        "the target layer is the model itself; pass one of its convolutional blocks "
                        "(e.g. 'layer4' for a ResNet)."
                    )
                return name, module
        raise TargetLayerError(
            f"the {type(target_layer).__name__} passed as target layer is not a submodule of "
            f"{type(model).__name__}; pass a module taken from this model or its name."
        )
    raise TargetLayerError(
        f"target_layer must be a layer name (str) or an nn.Module, not {type(target_layer).__name__}."
    )


def feature_layers(
    model: nn.Module, input_size: tuple[int, int] = (224, 224), channels: int = 3, in_finish_order: bool = False
) -> dict[str, tuple[int, int, int]]:
    """Names of all submodules whose output is a 4-D feature map, with its (C, h, w) shape.

    Runs one forward pass of a zero image of ``input_size`` (in eval mode, without gradients) and
    restores the model's train/eval mode afterwards. The names come in ``model.named_modules()`` order (the
    explorer's layer menu), or in the order the modules finished (``in_finish_order``: a container after its
    children, so the last one is the outermost module producing the last feature map).
    """
    shapes: dict[str, tuple[int, int, int]] = {}
    handles = []

    def make_hook(name: str) -> Callable[[nn.Module, object, object], None]:
        def hook(_module: nn.Module, _inputs: object, output: object) -> None:
            if isinstance(output, torch.Tensor) and output.dim() == 4 and name not in shapes:
                shapes[name] = (output.shape[1], output.shape[2], output.shape[3])

        return hook

    modes = {m: m.training for m in model.modules()}
    try:
        for name, module in model.named_modules():
            if name:
                handles.append(module.register_forward_hook(make_hook(name)))
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, channels, *input_size, device=device))
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes.items():
            m.training = mode
    if in_finish_order:
        return shapes
    order = [n for n, _ in model.named_modules() if n in shapes]
    return {n: shapes[n] for n in order}
