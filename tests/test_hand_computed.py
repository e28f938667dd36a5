"""Explainers on models whose activations and gradients are known exactly, with numbers worked out by hand."""

from __future__ import annotations

import warnings
from collections import OrderedDict

import pytest
import torch
from torch import nn

from gradscorecam import CAM, GradCAM, GradCAMPlusPlus, GradPlusPlusScoreCAM, SmoothGradCAMPlusPlus
from gradscorecam.explainers.gradient import unbounded_pixel_weights
from gradscorecam.explainers.postprocess import finalize


def linear_probe(class_weights: torch.Tensor) -> nn.Module:
    """Y_c = sum_kij V[c, k, i, j] A[k, i, j] with A = the input itself, so dY_c/dA = V[c] exactly."""
    classes = class_weights.shape[0]
    model = nn.Sequential(
        OrderedDict(
            features=nn.Identity(),
            flatten=nn.Flatten(),
            fc=nn.Linear(class_weights[0].numel(), classes, bias=False),
        )
    )
    with torch.no_grad():
        model.fc.weight.copy_(class_weights.reshape(classes, -1))
    return model.eval()


class QuadraticProbe(nn.Module):
    """Y_c = sum_kij V[c, k, i, j] A[k, i, j]^2 with A = the input, so dY_c/dA = 2 V[c] A."""

    def __init__(self, class_weights: torch.Tensor) -> None:
        super().__init__()
        self.features = nn.Identity()
        self.register_buffer("v", class_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.features(x)
        return torch.einsum("ckij,bkij->bc", self.v, a**2)


# Two channels of 2x2. Class 0 has gradients G = V[0]; the numbers below are worked out by hand.
A = torch.tensor([[[1.0, 2.0], [0.0, 1.0]], [[0.0, 1.0], [1.0, 0.0]]])
V0 = torch.tensor([[[0.5, -1.0], [1.0, 0.0]], [[0.2, 0.2], [0.2, 0.2]]])


def test_gradcampp_hand_computed():
    # Channel 1: sum A = 4.  a_ij = g^2 / (2 g^2 + 4 g^3):
    #   g = 0.5 -> 0.25 / (0.5 + 0.5) = 0.25;  g = -1 -> 1 / (2 - 4) = -0.5 (ReLU(g) = 0, no contribution)
    #   g = 1   -> 1 / (2 + 4) = 1/6;          g = 0  -> denominator 0 -> 0
    #   w_1 = 0.25 * 0.5 + 1/6 * 1 = 0.291666...
    # Channel 2: sum A = 2, g = 0.2 everywhere: a = 0.04 / (0.08 + 2 * 0.008) = 0.41666..., w_2 = 4 * a * 0.2 = 1/3
    # Map = w_1 A_1 + w_2 A_2 = [[0.291667, 0.916667], [0.333333, 0.291667]]
    # Min-max: [[0, 1], [(0.333333 - 0.291667) / 0.625, 0]] = [[0, 1], [0.066667, 0]]
    model = linear_probe(torch.stack([V0, torch.ones_like(V0)]))
    explanation = GradCAMPlusPlus(model, "features").explain(A[None], targets=0)
    alpha = explanation.details["pixel_weights"][0]
    assert torch.allclose(alpha[0], torch.tensor([[0.25, -0.5], [1 / 6, 0.0]]), atol=1e-6)
    assert torch.allclose(alpha[1], torch.full((2, 2), 0.41666667), atol=1e-6)
    assert torch.allclose(explanation.weights[0], torch.tensor([0.29166667, 1 / 3]), atol=1e-6)
    assert torch.allclose(explanation.maps[0], torch.tensor([[0.29166667, 0.91666667], [1 / 3, 0.29166667]]), atol=1e-6)
    saliency = GradCAMPlusPlus(model, "features")(A[None], targets=0, upsample=False)
    assert torch.allclose(saliency[0], torch.tensor([[0.0, 1.0], [0.0666667, 0.0]]), atol=1e-6)


def test_gradcam_hand_computed():
    # w_1 = mean(0.5, -1, 1, 0) = 0.125, w_2 = 0.2; map = [[0.125, 0.45], [0.2, 0.125]]
    model = linear_probe(torch.stack([V0, torch.ones_like(V0)]))
    explanation = GradCAM(model, "features").explain(A[None], targets=[0])
    assert torch.allclose(explanation.weights[0], torch.tensor([0.125, 0.2]))
    assert torch.allclose(explanation.maps[0], torch.tensor([[0.125, 0.45], [0.2, 0.125]]))


def test_gradcampp_eps_matters_for_small_gradients():
    # Gradients of 1e-4 and 1e-3, as in real ImageNet networks. Eq. 19 gives a_ij = 1 / (2 + S g) ~ 0.5 here;
    # pytorch-grad-cam's +1e-6 in the denominator shrinks a_ij ~50x for the small gradient but only ~1.5x for
    # the larger one, so the relative channel weights, and with them the normalised map, change.
    grads = torch.tensor([[[1e-4, 1e-4], [1e-4, 1e-4]], [[1e-3, 1e-3], [1e-3, 1e-3]]])
    acts = torch.tensor([[[1.0, 1.0], [0.0, 0.0]], [[0.0, 1.0], [1.0, 0.0]]])  # S = 2 for both channels
    model = linear_probe(grads[None])
    exact = GradCAMPlusPlus(model, "features")(acts[None], targets=0, upsample=False)[0]
    with_eps = GradCAMPlusPlus(model, "features", eps=1e-6)(acts[None], targets=0, upsample=False)[0]

    def expected(w1: float, w2: float) -> torch.Tensor:  # map [[w1, w1 + w2], [w2, 0]], min 0, max w1 + w2
        return torch.tensor([[w1, w1 + w2], [w2, 0.0]]) / (w1 + w2)

    # Eq. 19: w = 4 * g / (2 + 2 g) for each channel.
    assert torch.allclose(exact, expected(4e-4 / (2 + 2e-4), 4e-3 / (2 + 2e-3)), atol=1e-6)
    # With eps: w = 4 * g^3 / (2 g^2 + 2 g^3 + 1e-6).
    w1, w2 = 4e-12 / (2e-8 + 2e-12 + 1e-6), 4e-9 / (2e-6 + 2e-9 + 1e-6)
    assert torch.allclose(with_eps, expected(w1, w2), atol=1e-6)
    assert (exact - with_eps).abs().max() > 0.05  # 0.0909 -> 0.0029 at the top-left pixel


def test_cam_equals_gradcam_on_gap_linear_model(gap_net, images):
    # With global average pooling and one linear layer, dY_c/dA_kij = W_ck / (h w): Grad-CAM's weights are
    # CAM's divided by h w, so the normalised maps are identical (Zhou et al. / Selvaraju et al.).
    for targets in (None, [0, 5, 9]):
        cam = CAM(gap_net, "layer")(images, targets)
        gradcam = GradCAM(gap_net, "layer")(images, targets)
        assert torch.allclose(cam, gradcam, atol=1e-5)
        assert cam.amax(dim=(1, 2)).min() == 1.0  # not trivially zero maps
    hw = CAM(gap_net, "layer").explain(images).activations[0, 0].numel()
    cam_w = CAM(gap_net, "layer").explain(images, 3).weights
    grad_w = GradCAM(gap_net, "layer").explain(images, 3).weights
    assert torch.allclose(cam_w, grad_w * hw, atol=1e-6)


def test_cam_weights_are_the_fc_row(gap_net, images):
    explanation = CAM(gap_net, "layer").explain(images, targets=[1, 2, 3])
    assert torch.equal(explanation.weights, gap_net.fc.weight.detach()[[1, 2, 3]])


def test_relu_comes_before_upsampling():
    # Raw map [[-1, 1]] -> ReLU [[0, 1]] -> bilinear (align_corners=False) to width 4: sample points
    # x = (i + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25 (clamped) -> [0, 0.25, 0.75, 1]; min-max keeps it.
    # Upsampling first would give [-1, -0.5, 0.5, 1] -> ReLU -> [0, 0, 0.5, 1].
    out = finalize(torch.tensor([[[-1.0, 1.0]]]), (1, 4))
    assert torch.allclose(out, torch.tensor([[[0.0, 0.25, 0.75, 1.0]]]))


def test_all_zero_map_stays_zero():
    model = linear_probe(torch.zeros(2, 2, 2, 2))  # every gradient is zero
    saliency = GradCAM(model, "features")(A[None], targets=0)
    assert torch.equal(saliency, torch.zeros(1, 2, 2))
    assert finalize(torch.full((1, 3, 3), 2.0), (6, 6)).abs().sum() == 0  # constant map: no spatial information


def test_smoothgrad_averages_gradient_moments():
    # With A = X and Y_c = sum V A^2, the gradient on a noisy copy X + s eps is 2 V (X + s eps), known exactly.
    torch.manual_seed(0)
    v = torch.rand(3, 2, 2, 2) - 0.3
    x = torch.rand(1, 2, 2, 2) + 0.5
    n, level, seed = 4, 0.2, 7
    explainer = SmoothGradCAMPlusPlus(QuadraticProbe(v), "features", n_samples=n, noise_level=level, seed=seed)
    explanation = explainer.explain(x, targets=1)
    sigma = level * (x.max() - x.min())
    noise = torch.randn((n, 2, 2, 2), generator=torch.Generator().manual_seed(seed))  # documented draw order
    grads = 2 * v[1] * (x + sigma * noise)  # (n, K, h, w)
    d1, d2, d3 = grads.mean(0), (grads**2).mean(0), (grads**3).mean(0)
    s = x[0].sum(dim=(-2, -1), keepdim=True)
    alpha = d2 / (2 * d2 + s * d3)
    weights = (alpha * d1.clamp_min(0)).sum(dim=(-2, -1))
    assert torch.allclose(explanation.weights[0], weights, rtol=1e-5, atol=1e-7)
    assert torch.allclose(explanation.details["pixel_weights"][0], alpha, rtol=1e-5, atol=1e-7)


def test_smoothgrad_without_noise_is_gradcampp(gap_net, images):
    smooth = SmoothGradCAMPlusPlus(gap_net, "layer", n_samples=3, noise_level=0.0)(images)
    plain = GradCAMPlusPlus(gap_net, "layer")(images)
    assert torch.allclose(smooth, plain, atol=1e-6)


def test_smoothgrad_seed_makes_it_deterministic(gap_net, images):
    first = SmoothGradCAMPlusPlus(gap_net, "block", n_samples=5, seed=3)(images)
    again = SmoothGradCAMPlusPlus(gap_net, "block", n_samples=5, seed=3)(images)
    other = SmoothGradCAMPlusPlus(gap_net, "block", n_samples=5, seed=4)(images)
    assert torch.equal(first, again)
    assert not torch.allclose(first, other, atol=1e-3)


@pytest.mark.parametrize("bad", [0, -1])
def test_smoothgrad_rejects_bad_sample_count(gap_net, bad):
    with pytest.raises(ValueError, match="n_samples"):
        SmoothGradCAMPlusPlus(gap_net, "layer", n_samples=bad)


def test_smoothgrad_equals_gradcampp_before_gap_linear(gap_net, images):
    # dY/dA = W_c / (h w) right before global average pooling + linear: no input dependence, so the noisy
    # copies all have the clean gradient (documented in SmoothGradCAMPlusPlus).
    smooth = SmoothGradCAMPlusPlus(gap_net, "layer", n_samples=4, noise_level=0.5)(images)
    assert torch.allclose(smooth, GradCAMPlusPlus(gap_net, "layer")(images), atol=1e-6)
    inner_smooth = SmoothGradCAMPlusPlus(gap_net, "block", n_samples=4, noise_level=0.5)(images)
    assert not torch.allclose(inner_smooth, GradCAMPlusPlus(gap_net, "block")(images), atol=1e-3)


def test_gradcampp_warns_where_signed_activations_break_eq19():
    # Channel 1 sums to S = 1 - 2 - 1 - 2 = -4 (a BatchNorm output could); a_ij = g^2 / (2 g^2 + S g^3):
    #   g = 0.25 -> 0.0625 / (0.125 - 0.0625) = 1      (twice the largest value a >= 0 layer can give)
    #   g = 0.5  -> 0.25 / (0.5 - 0.5): denominator 0 -> 0   (the pole of 1 / (2 + S g))
    #   g = 0.75 -> 0.5625 / (1.125 - 1.6875) = -1     (past the pole: negative)
    #   g = 0.1  -> 0.01 / (0.02 - 0.004) = 0.625
    #   w_1 = 1 * 0.25 + 0 * 0.5 - 1 * 0.75 + 0.625 * 0.1 = -0.4375
    # Channel 2: S = 4, g = 0.5: a = 0.25 / (0.5 + 0.5) = 0.25, w_2 = 4 * 0.25 * 0.5 = 0.5 (no warning).
    signed = torch.tensor([[[1.0, -2.0], [-1.0, -2.0]], [[1.0, 1.0], [1.0, 1.0]]])
    grads = torch.tensor([[[0.25, 0.5], [0.75, 0.1]], [[0.5, 0.5], [0.5, 0.5]]])
    model = linear_probe(grads[None])
    with pytest.warns(
        RuntimeWarning, match=r"Grad-CAM\+\+ at layer 'features'.* leave \(0, 1\] in 1 \(image, channel\)"
    ):
        explanation = GradCAMPlusPlus(model, "features").explain(signed[None], targets=0)
    alpha = explanation.details["pixel_weights"][0]
    assert torch.allclose(alpha[0], torch.tensor([[1.0, 0.0], [-1.0, 0.625]]), atol=1e-6)  # Eq. 19 kept as is
    assert torch.allclose(alpha[1], torch.full((2, 2), 0.25), atol=1e-6)
    assert torch.allclose(explanation.weights[0], torch.tensor([-0.4375, 0.5]), atol=1e-6)
    flagged = unbounded_pixel_weights(signed[None], grads[None] ** 2, grads[None] ** 3, grads[None] > 0)[0]
    assert flagged.tolist() == [[[True, True], [True, False]], [[False, False], [False, False]]]


def test_gradcampp_is_silent_on_nonnegative_activations():
    # After a ReLU, S >= 0 and a = 1 / (2 + S g) lies in (0, 1/2] wherever g > 0: never a warning.
    model = linear_probe(torch.stack([V0, torch.ones_like(V0)]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        GradCAMPlusPlus(model, "features").explain(A[None], targets=0)
        SmoothGradCAMPlusPlus(model, "features", n_samples=2).explain(A[None], targets=0)


def test_smoothgrad_and_gradpp_scorecam_warn_on_signed_activations():
    signed = torch.tensor([[[1.0, -2.0], [-1.0, -2.0]]])
    model = linear_probe(torch.tensor([[[0.25, 0.5], [0.75, 0.1]]])[None])
    with pytest.warns(RuntimeWarning, match="SmoothGrad-CAM\\+\\+ at layer 'features'"):
        SmoothGradCAMPlusPlus(model, "features", n_samples=2, noise_level=0.0).explain(signed[None], targets=0)
    with pytest.warns(RuntimeWarning, match="Grad\\+\\+ScoreCAM at layer 'features'"):
        GradPlusPlusScoreCAM(model, "features", fuse_batchnorm=False).explain(signed[None], targets=0)
