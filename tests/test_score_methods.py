"""Score-CAM and Grad++ScoreCAM: each option checked against a direct per-channel computation."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gradscorecam import GradCAMPlusPlus, GradPlusPlusScoreCAM, ScoreCAM

SCORECAM_READING = dict(mask_source="activation", perturb="input", baseline=None, combine="score", max_channels="all")


def _minmax(x: torch.Tensor) -> torch.Tensor:
    return (x - x.min()) / (x.max() - x.min())


def _score(model, x, target):
    with torch.no_grad():
        return torch.softmax(model(x), dim=1)[0, target].item()


def test_scorecam_follows_the_authors_loop(gap_net, images):
    # The Score-CAM authors' loop, one channel at a time: upsample, min-max, mask, softmax score.
    image, target = images[:1], 6
    explanation = ScoreCAM(gap_net, "layer", batch_size=5).explain(image, target)
    acts = explanation.activations[0]
    expected = torch.zeros(acts.shape[0])
    for k in range(acts.shape[0]):
        up = F.interpolate(acts[k][None, None], size=(16, 16), mode="bilinear", align_corners=False)[0, 0]
        if up.max() == up.min():
            continue
        expected[k] = _score(gap_net, image * _minmax(up), target)
    assert torch.allclose(explanation.weights[0], expected, atol=1e-6)
    assert torch.allclose(explanation.maps[0], torch.einsum("k,khw->hw", expected, acts), atol=1e-5)


def test_gradpp_scorecam_reduces_to_scorecam_exactly(gap_net, vgg_net, images):
    for model, layer in ((gap_net, "layer"), (vgg_net, "features.3")):
        score_cam = ScoreCAM(model, layer, batch_size=7).explain(images, [3, 1, 4])
        reading = GradPlusPlusScoreCAM(model, layer, batch_size=7, **SCORECAM_READING).explain(images, [3, 1, 4])
        assert torch.equal(score_cam.weights, reading.weights)
        assert torch.equal(score_cam.maps, reading.maps)


def test_gradient_masks_follow_gradcampp_terms(vgg_net, images):
    # mask_source="gradient": M^k = a^k * ReLU(G^k) * A^k, scored at the input resolution, baseline subtracted.
    image, target = images[:1], 2
    explainer = GradPlusPlusScoreCAM(vgg_net, "features.3", mask_source="gradient", max_channels="all")
    explanation = explainer.explain(image, target)
    reference = GradCAMPlusPlus(vgg_net, "features.3").explain(image, target)
    alpha, grads, acts = (
        reference.details["pixel_weights"][0],
        reference.details["gradients"][0],
        reference.activations[0],
    )
    masks = alpha * torch.relu(grads) * acts
    torch.testing.assert_close(explanation.details["masks"][0], masks)  # what the explorer's teaching view shows
    base = _score(vgg_net, torch.zeros_like(image), target)
    expected = torch.zeros(acts.shape[0])
    for k in range(acts.shape[0]):
        if masks[k].max() == masks[k].min():
            continue
        up = F.interpolate(masks[k][None, None], size=(16, 16), mode="bilinear", align_corners=False)[0, 0]
        expected[k] = _score(vgg_net, image * _minmax(up), target) - base
    assert torch.allclose(explanation.weights[0], expected, atol=1e-6)
    assert torch.allclose(explanation.details["grad_weights"], reference.weights, atol=1e-7)
    assert abs(explanation.details["baseline_score"][0].item() - base) < 1e-7


def test_feature_perturbation_is_the_papers_steps_8_and_9(vgg_net, images):
    # perturb="feature": downsize X to (h, w), multiply by minmax(M^k), resize back, score.
    image, target = images[:1], 5
    explanation = GradPlusPlusScoreCAM(
        vgg_net, "features.3", mask_source="gradient", perturb="feature", baseline=None, max_channels="all"
    ).explain(image, target)
    acts = explanation.activations[0]
    masks = explanation.details["pixel_weights"][0] * torch.relu(explanation.details["gradients"][0]) * acts
    small = F.interpolate(image, size=acts.shape[-2:], mode="bilinear", align_corners=False, antialias=True)
    expected = torch.zeros(acts.shape[0])
    for k in range(acts.shape[0]):
        if masks[k].max() == masks[k].min():
            continue
        masked = F.interpolate(small * _minmax(masks[k]), size=(16, 16), mode="bilinear", align_corners=False)
        expected[k] = _score(vgg_net, masked, target)
    assert torch.allclose(explanation.weights[0], expected, atol=1e-6)


def test_baseline_subtracts_the_zero_image_score(vgg_net, images):
    without = GradPlusPlusScoreCAM(vgg_net, "features.3", baseline=None).explain(images, [0, 1, 2])
    with_base = GradPlusPlusScoreCAM(vgg_net, "features.3", baseline="zeros").explain(images, [0, 1, 2])
    base = torch.softmax(vgg_net(torch.zeros(1, 3, 16, 16)), dim=1)[0, [0, 1, 2]].detach()
    scored = with_base.details["scored"]
    assert torch.allclose(with_base.weights, torch.where(scored, without.weights - base[:, None], 0.0), atol=1e-7)


def test_combine_score_x_grad_multiplies_by_gradcampp_weights(vgg_net, images):
    plain = GradPlusPlusScoreCAM(vgg_net, "features.3", combine="score").explain(images)
    product = GradPlusPlusScoreCAM(vgg_net, "features.3", combine="score_x_grad").explain(images)
    assert torch.allclose(product.weights, plain.weights * plain.details["grad_weights"], atol=1e-9)


def test_channel_budget_scores_only_the_top_positive_weights(vgg_net, images):
    explanation = GradPlusPlusScoreCAM(vgg_net, "features.3", max_channels=4).explain(images)
    scored, grad_weights = explanation.details["scored"], explanation.details["grad_weights"]
    for b in range(len(images)):
        positive = (grad_weights[b] > 0).sum().item()
        assert scored[b].sum().item() == min(4, positive)
        # every scored channel outranks every unscored one
        assert grad_weights[b][scored[b]].min() >= grad_weights[b][~scored[b]].max()
        assert torch.equal(explanation.weights[b][~scored[b]], torch.zeros((~scored[b]).sum().item()))
    full = GradPlusPlusScoreCAM(vgg_net, "features.3", max_channels="all").explain(images)
    assert full.details["scored"].sum() > scored.sum()  # "all" really scores more than the budget
    assert torch.allclose(explanation.weights[scored], full.weights[scored], atol=1e-7)


def test_gradient_and_activation_masks_agree_before_gap_linear(gap_net, images):
    # dY/dA is constant over space right before global average pooling + linear, so a^k and ReLU(G^k) are
    # constant per channel and M^k = a^k ReLU(G^k) A^k has the masks of A^k wherever G^k > 0. The two
    # explainers must really use the two mask sources (the defaults must not make this compare a reading with
    # itself): the raw masks differ by a per-channel factor, the normalised masks and the weights agree.
    gradient = GradPlusPlusScoreCAM(gap_net, "layer", baseline=None, mask_source="gradient").explain(images)
    activation = GradPlusPlusScoreCAM(gap_net, "layer", baseline=None, mask_source="activation").explain(images)
    assert gradient.details["masks"].shape == activation.details["masks"].shape
    scored = gradient.details["scored"]
    assert torch.equal(scored, activation.details["scored"]) and scored.sum() > 5
    assert not gradient.details["scored"][gradient.details["grad_weights"] <= 0].any()
    grad_masks, act_masks = gradient.details["masks"][scored], activation.details["masks"][scored]
    assert (grad_masks - act_masks).abs().max() > 1e-3  # different maps M^k ...
    factor = gradient.details["pixel_weights"] * torch.relu(gradient.details["gradients"])
    torch.testing.assert_close(grad_masks, factor[scored] * act_masks)
    normalised = [torch.stack([_minmax(m) for m in masks]) for masks in (grad_masks, act_masks)]
    torch.testing.assert_close(*normalised, atol=1e-5, rtol=1e-5)  # ... the same masks H^k
    torch.testing.assert_close(gradient.weights, activation.weights, atol=1e-6, rtol=0)
    torch.testing.assert_close(gradient.maps, activation.maps, atol=1e-6, rtol=0)


def test_scorecam_channel_budget_keeps_the_most_active_channels(vgg_net, images):
    budget = ScoreCAM(vgg_net, "features.3", max_channels=3).explain(images, [0, 1, 2])
    full = ScoreCAM(vgg_net, "features.3").explain(images, [0, 1, 2])
    means = full.activations.mean(dim=(-2, -1))
    scored = budget.details["scored"]
    assert scored.sum(dim=1).tolist() == [3, 3, 3]
    for b in range(3):
        assert means[b][scored[b]].min() >= means[b][~scored[b]].max()
    assert torch.equal(budget.weights[scored], full.weights[scored])
    assert torch.equal(budget.weights[~scored], torch.zeros(int((~scored).sum())))
