"""The shared base of all explainers: input checks, target classes, one captured forward pass, output.

A method is a small subclass that overrides :meth:`BaseCAM._channel_weights`; everything else (hooks,
model state, targets, post-processing) lives here so that all six methods treat input alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..errors import InputImageError, TargetLayerError
from ..torchutils import model_state_guard
from .capture import forward_with_capture
from .checks import check_finite
from .layers import LayerSpec, resolve_target_layer
from .postprocess import finalize
from .targets import Targets, resolve_targets

__all__ = ["BaseCAM", "Captured", "Explanation", "Targets", "resolve_targets"]

# Larger inputs are almost always an untransformed photograph; score-based methods would run K passes at that size.
DEFAULT_MAX_INPUT_PIXELS = 1024 * 1024


@dataclass(frozen=True)
class Explanation:
    """Everything one explainer call computed, for inspection (the explorer's teaching view, the tests).

    Attributes:
        maps: (B, h, w) the linear combination ``sum_k weights[:, k] * activations[:, k]`` before ReLU.
        weights: (B, K) the channel weights of the method.
        activations: (B, K, h, w) the target layer's output A on the clean images.
        targets: (B,) the class explained for each image.
        logits: (B, num_classes) the model's output on the clean images.
        details: method-specific intermediate tensors (gradients, Grad-CAM++ pixel weights, per-channel
            scores, which channels were scored ...), documented by each method.
    """

    maps: Tensor
    weights: Tensor
    activations: Tensor
    targets: Tensor
    logits: Tensor
    details: dict[str, Tensor] = field(default_factory=dict)

    def saliency(self, size: tuple[int, int] | None) -> Tensor:
        """The post-processed map in [0, 1]: ReLU, bilinear upsampling to ``size`` (None: keep h, w), min-max."""
        return finalize(self.maps, size)


@dataclass
class Captured:
    """What one clean forward (and, for gradient methods, backward) pass gave a method to work with."""

    images: Tensor
    activations: Tensor  # (B, K, h, w), detached
    gradients: Tensor | None  # (B, K, h, w) dY^c/dA, or None for gradient-free methods
    logits: Tensor  # (B, num_classes), detached
    targets: Tensor  # (B,) long


class BaseCAM:
    """Base class of the class activation map explainers.

    ``explainer(images, targets=None, upsample=True)`` returns the saliency maps, a float32 tensor
    (B, H, W) in [0, 1] on ``images.device`` (or (B, h, w) at the target layer's resolution with
    ``upsample=False``). ``explainer.explain(images, targets)`` returns the full :class:`Explanation`.

    Args:
        model: a classifier returning (B, num_classes) logits. It is run in eval mode with frozen
            parameters during a call; its modes, ``requires_grad`` flags and ``.grad`` are restored after.
        target_layer: a name from ``model.named_modules()`` or the module itself; its output must be 4-D.
        max_input_pixels: refuse images with more pixels than this (None: no limit), which catches
            photographs passed without the model's transform.

    Every explainer is a context manager (``with GradCAM(model, "layer4") as cam: ...``); hooks live only
    for the duration of a call, so leaving the block has nothing left to release, but it is the place to
    say so.
    """

    #: whether the clean forward pass is followed by a backward pass that gives the method dY^c/dA
    #: (``Captured.gradients``). False for CAM and Score-CAM, which need no gradient, and for
    #: SmoothGrad-CAM++, which needs gradients but takes them on its noisy copies, not on the clean image.
    backward_on_clean_image: ClassVar[bool] = True

    def __init__(
        self,
        model: nn.Module,
        target_layer: LayerSpec,
        *,
        max_input_pixels: int | None = DEFAULT_MAX_INPUT_PIXELS,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, not {type(model).__name__}")
        self.model = model
        self.target_layer_name, self.target_layer = resolve_target_layer(model, target_layer)
        self.max_input_pixels = max_input_pixels

    # ----------------------------------------------------------------------------------------- public API
    def __call__(self, images: Tensor, targets: Targets = None, upsample: bool = True) -> Tensor:
        explanation = self.explain(images, targets)
        return explanation.saliency((images.shape[-2], images.shape[-1]) if upsample else None)

    def explain(self, images: Tensor, targets: Targets = None) -> Explanation:
        """Compute the channel weights and the raw map for ``images`` (see :class:`Explanation`)."""
        self._check_images(images)
        with model_state_guard(self.model), torch.inference_mode(False):
            if images.is_inference():  # made under inference_mode: autograd cannot use it as is
                images = images.clone()
            captured = self._capture(images, targets)
            weights, details = self._channel_weights(captured)
        weights = weights.detach().float()
        maps = torch.einsum("bk,bkhw->bhw", weights, captured.activations.float())
        return Explanation(
            maps=maps,
            weights=weights,
            activations=captured.activations,
            targets=captured.targets,
            logits=captured.logits,
            details=details,
        )

    def options(self) -> dict[str, Any]:
        """The effective constructor options, defaults included, JSON-serialisable (layers by name).

        What ran, for recording next to results: ``type(explainer)(model, **explainer.options())`` builds an
        explainer that computes the same maps. Options that cannot change a map and are not plain data
        (``progress``) are left out. Each subclass adds its own options to its parent's.
        """
        return {"target_layer": self.target_layer_name, "max_input_pixels": self.max_input_pixels}

    def __enter__(self) -> BaseCAM:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(target_layer={self.target_layer_name!r})"

    # ---------------------------------------------------------------------------------- for subclasses
    def _channel_weights(self, captured: Captured) -> tuple[Tensor, dict[str, Tensor]]:
        """Return the (B, K) channel weights and a dict of method-specific details."""
        raise NotImplementedError

    def _class_gradients(self, images: Tensor, targets: Targets) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """One forward and backward pass: ``(logits, A, dY^c/dA, targets)``, Y^c the logit of each image's class.

        ``targets=None`` explains each image's top class, read off this same forward pass.
        """
        with torch.enable_grad():
            logits, activations = forward_with_capture(
                self.model, self.target_layer, self.target_layer_name, images, need_grad=True
            )
            self._check_logits(logits)
            resolved = resolve_targets(targets, logits.detach(), len(images), logits.shape[1])
            scores = logits.gather(1, resolved.view(-1, 1)).sum()
            # Images are independent in eval mode, so the gradient of the sum is each image's own gradient.
            (gradients,) = torch.autograd.grad(scores, activations, allow_unused=True)
        if gradients is None:
            raise TargetLayerError(
                f"the class score does not depend on target layer {self.target_layer_name!r}; "
                "pick a layer on the path to the classifier's output."
            )
        return logits.detach(), activations.detach(), gradients, resolved

    # ------------------------------------------------------------------------------------------ helpers
    def _capture(self, images: Tensor, targets: Targets) -> Captured:
        if self.backward_on_clean_image:
            logits, activations, gradients, resolved = self._class_gradients(images, targets)
            return Captured(images, activations, gradients, logits, resolved)
        with torch.no_grad():
            logits, activations = forward_with_capture(
                self.model, self.target_layer, self.target_layer_name, images, need_grad=False
            )
        self._check_logits(logits)
        resolved = resolve_targets(targets, logits, len(images), logits.shape[1])
        return Captured(images, activations, None, logits, resolved)

    @staticmethod
    def _check_logits(logits: object) -> None:
        if not isinstance(logits, Tensor) or logits.dim() != 2:
            shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
            raise InputImageError(
                f"the model returned {shape}; CAM explainers need a classifier returning (B, num_classes) logits."
            )

    def _check_images(self, images: object) -> None:
        if not isinstance(images, Tensor):
            raise InputImageError(
                f"images must be a torch.Tensor of shape (B, 3, H, W), not {type(images).__name__}; "
                "apply the model's transform (PIL image -> normalised tensor) first."
            )
        if images.dim() != 4:
            hint = " Add a batch dimension with images.unsqueeze(0)." if images.dim() == 3 else ""
            raise InputImageError(f"images must be 4-D (B, C, H, W), got shape {tuple(images.shape)}.{hint}")
        if not images.is_floating_point():
            raise InputImageError(
                f"images must be a float tensor normalised for the model, got dtype {images.dtype}; "
                "use the model's transform (ToTensor + Normalize) rather than raw uint8 pixels."
            )
        check_finite(images, "the images passed to the explainer")
        expected = _first_conv_channels(self.model)
        if expected is not None and images.shape[1] != expected:
            hint = (
                " A grayscale image? Convert it with PIL's .convert('RGB') before the transform."
                if images.shape[1] == 1
                else ""
            )
            raise InputImageError(
                f"the model's first convolution expects {expected} channels, the images have {images.shape[1]}.{hint}"
            )
        pixels = images.shape[-1] * images.shape[-2]
        if self.max_input_pixels is not None and pixels > self.max_input_pixels:
            raise InputImageError(
                f"images are {images.shape[-1]}x{images.shape[-2]} pixels, more than max_input_pixels="
                f"{self.max_input_pixels}: resize with the model's transform first (ImageNet models expect about "
                "224x224), or pass max_input_pixels=None to allow it."
            )
        param = next(self.model.parameters(), None)
        if param is not None and param.device != images.device:
            raise InputImageError(
                f"the model is on {param.device} but the images are on {images.device}; "
                f"move them with images.to({str(param.device)!r})."
            )


def _first_conv_channels(model: nn.Module) -> int | None:
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module.in_channels
    return None
