"""Cross-checks against the reference implementations on PyPI: pytorch-grad-cam (``grad-cam``) and torchcam.

Where the method is the same, channel weights and feature-resolution maps must agree within 1e-4
relative. Known, deliberate differences, each passed through a documented option here:

* pytorch-grad-cam adds 1e-6 to the Grad-CAM++ denominator; ours follows Eq. 19 (``eps=0``), so the
  cross-check passes ``eps=1e-6`` (test_gradcampp_eps_matters_for_small_gradients shows why it matters).
* pytorch-grad-cam's ScoreCAM differs from the Score-CAM authors' code (softmax over channels of masked
  logits, align_corners=True, every channel scored); ``variant="pytorch-grad-cam"`` reproduces it.
* torchcam's ScoreCAM normalises A^k at the feature resolution before upsampling (align_corners=False)
  and subtracts the clean logit inside a softmax over channels (a no-op for a softmax);
  ``variant="torchcam"`` reproduces it. torchcam's Grad-CAM++ is not used: its weights are wrong (an
  in-place division on a boolean-indexed copy is lost).
* All score-based checks run with the default speed options (BatchNorm folded into a copy of the model,
  channels-last inputs), so they also check that the fast path computes the reference's numbers.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradscorecam import GradCAM, GradCAMPlusPlus, ScoreCAM

_MISSING = 'the reference libraries are test extras: install them with pip install -e ".[test]"'
pytorch_grad_cam = pytest.importorskip("pytorch_grad_cam", reason=f"pytorch-grad-cam (grad-cam) is missing; {_MISSING}")
RefGradCAM = pytorch_grad_cam.GradCAM
RefGradCAMPlusPlus = pytorch_grad_cam.GradCAMPlusPlus
RefScoreCAM = pytorch_grad_cam.ScoreCAM
ClassifierOutputTarget = pytest.importorskip("pytorch_grad_cam.utils.model_targets").ClassifierOutputTarget

TARGET_SETS = [[1, 7], [500, 3]]
# Input sizes that keep each network's target layer at least 2x2 while the CPU tests stay fast.
INPUT_SIZE = {"resnet18": 96, "vgg11": 64, "alexnet": 96}


def _torchcam():
    return pytest.importorskip("torchcam.methods", reason=f"torchcam is missing; {_MISSING}")


def _relative(ours: torch.Tensor, theirs: np.ndarray) -> float:
    theirs_t = torch.from_numpy(np.asarray(theirs, dtype=np.float32))
    return float((ours - theirs_t).abs().max() / theirs_t.abs().max().clamp_min(1e-12))


def _reference(ref_cls, model, layer_module, images, targets, **attrs):
    """Weights and raw (pre-ReLU) maps from a pytorch-grad-cam explainer, through its get_cam_weights."""
    ref = ref_cls(model, [layer_module])
    for key, value in attrs.items():
        setattr(ref, key, value)
    try:
        wrapped = [ClassifierOutputTarget(t) for t in targets]
        outputs = ref.activations_and_grads(images)
        if ref.uses_gradients:
            model.zero_grad()
            sum(t(o) for t, o in zip(wrapped, outputs, strict=True)).backward()
        acts = ref.activations_and_grads.activations[0].numpy()
        grads = ref.activations_and_grads.gradients[0].numpy() if ref.uses_gradients else None
        weights = ref.get_cam_weights(images, layer_module, wrapped, acts, grads)
        maps = ref.get_cam_image(images, layer_module, wrapped, acts, grads)
    finally:
        ref.activations_and_grads.release()
        model.zero_grad(set_to_none=True)
    return weights, maps


@pytest.mark.parametrize("arch", ["resnet18", "vgg11", "alexnet"])
@pytest.mark.parametrize("targets", TARGET_SETS)
@pytest.mark.parametrize(
    "ours_cls, ref_cls, options",
    [(GradCAM, RefGradCAM, {}), (GradCAMPlusPlus, RefGradCAMPlusPlus, {"eps": 1e-6})],
    ids=["Grad-CAM", "Grad-CAM++"],
)
def test_gradient_methods_match_pytorch_grad_cam(torchvision_models, arch, targets, ours_cls, ref_cls, options):
    model, layer = torchvision_models[arch]
    size = INPUT_SIZE[arch]
    images = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(len(arch)))
    ours = ours_cls(model, layer, **options).explain(images, targets)
    weights, maps = _reference(ref_cls, model, dict(model.named_modules())[layer], images, targets)
    assert _relative(ours.weights, weights) < 1e-4
    assert _relative(ours.maps, maps) < 1e-4
    assert ours.targets.tolist() == targets


@pytest.mark.parametrize("arch", ["resnet18", "vgg11", "alexnet"])
def test_scorecam_matches_pytorch_grad_cam_variant(torchvision_models, arch):
    model, layer = torchvision_models[arch]
    size = {"resnet18": 64, "vgg11": 32, "alexnet": 64}[arch]  # target layers of 2x2 or 3x3: K passes stay cheap
    images = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(3))
    targets = [2, 9]
    ours = ScoreCAM(model, layer, variant="pytorch-grad-cam", batch_size=64).explain(images, targets)
    weights, maps = _reference(RefScoreCAM, model, dict(model.named_modules())[layer], images, targets, batch_size=64)
    assert _relative(ours.weights, weights) < 1e-4
    assert _relative(ours.maps, maps) < 1e-4


@pytest.mark.parametrize("arch", ["resnet18", "alexnet"])
def test_gradcam_matches_torchcam(torchvision_models, arch):
    TorchcamGradCAM = _torchcam().GradCAM

    model, layer = torchvision_models[arch]
    images = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(5))
    targets = [4, 11]
    ours = GradCAM(model, layer).explain(images, targets)
    with TorchcamGradCAM(model, layer, input_shape=(3, 96, 96)) as extractor:
        scores = model(images)
        (theirs,) = extractor(class_idx=targets, scores=scores, normalized=False)  # ReLU'd, not normalised
    model.zero_grad(set_to_none=True)
    assert _relative(torch.relu(ours.maps), theirs.detach().numpy()) < 1e-4


@pytest.mark.parametrize("arch", ["resnet18", "vgg11", "alexnet"])
def test_scorecam_matches_torchcam_variant(torchvision_models, arch):
    TorchcamScoreCAM = _torchcam().ScoreCAM

    model, layer = torchvision_models[arch]
    size = {"resnet18": 64, "vgg11": 32, "alexnet": 64}[arch]
    images = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(3))
    targets = [2, 9]
    ours = ScoreCAM(model, layer, variant="torchcam", batch_size=64).explain(images, targets)
    with TorchcamScoreCAM(model, layer, batch_size=64, input_shape=(3, size, size)) as extractor:
        recorded = []
        get_weights = extractor._get_weights
        extractor._get_weights = lambda *a, **k: recorded.append(get_weights(*a, **k)) or recorded[-1]
        with torch.inference_mode():
            model(images)
        (theirs,) = extractor(class_idx=targets, normalized=False)  # ReLU'd, not normalised
    (weights,) = recorded[0]
    assert _relative(ours.weights, weights.numpy()) < 1e-4
    assert _relative(torch.relu(ours.maps), theirs.numpy()) < 1e-4
