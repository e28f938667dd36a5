"""The speed options of the masked passes give the plain path's maps, and leave the user's model alone.

Tolerances (stated in lib/gradscorecam/explainers/speed.py and the README):

* float32 options (``channels_last``, ``fuse_batchnorm``) change only float rounding: channel scores
  within 1e-6 (probabilities, logits of these small nets), raw maps within 1e-4 of their largest value.
* ``autocast`` runs the masked passes in 16-bit floats: channel scores within 1e-2 (bf16) and 2e-3
  (fp16) of their largest value. Grad++ScoreCAM's α_k = p(X ⊙ H^k) − p(0) is a difference of two
  such scores, so where the α_k are as small as the rounding (random networks) its maps can change
  wholesale: autocast is an approximation to be checked on the network at hand, and it is off by default.

Timing is not tested here (benchmarks/ measures it).
"""

from __future__ import annotations

import gc
import warnings
import weakref
from collections import OrderedDict

import pytest
import torch
import torchvision
from conftest import small_gap_net
from torch import nn

from gradscorecam import GradPlusPlusScoreCAM, ScoreCAM
from gradscorecam.explainers.scoring import score_masked_inputs
from gradscorecam.explainers.speed import (
    FusedModelCache,
    ScoringSpeed,
    cudnn_benchmark,
    fast_forward,
    fuse_batchnorm,
    shared_cache,
)

PLAIN = dict(channels_last=False, fuse_batchnorm=False, autocast=None, cudnn_benchmark=False)
FLOAT32_OPTIONS = {
    "channels_last": dict(PLAIN, channels_last=True),
    "fuse_batchnorm": dict(PLAIN, fuse_batchnorm=True),
    "defaults": {},
}
METHODS = {
    "Score-CAM": (ScoreCAM, {}),
    "Score-CAM pytorch-grad-cam": (ScoreCAM, {"variant": "pytorch-grad-cam"}),
    "Score-CAM torchcam": (ScoreCAM, {"variant": "torchcam"}),
    "Grad++ScoreCAM": (GradPlusPlusScoreCAM, {}),
    "Grad++ScoreCAM feature budget": (GradPlusPlusScoreCAM, {"perturb": "feature", "max_channels": 5}),
}
TARGETS = [1, 2, 3]


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def _params(model: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor, tuple[int, ...]]]:
    return [(p, p.detach().clone(), p.stride()) for p in [*model.parameters(), *model.buffers()]]


def _assert_untouched(model: nn.Module, before) -> None:
    after = [*model.parameters(), *model.buffers()]
    assert len(after) == len(before)
    for tensor, (same, value, stride) in zip(after, before, strict=True):
        assert tensor is same and tensor.stride() == stride and torch.equal(tensor, value)


@pytest.mark.parametrize("option", list(FLOAT32_OPTIONS))
@pytest.mark.parametrize("method", list(METHODS))
def test_float32_speed_options_match_the_plain_path(gap_net, images, method, option):
    cls, options = METHODS[method]
    plain = cls(gap_net, "layer", **options, **PLAIN).explain(images, TARGETS)
    fast = cls(gap_net, "layer", **options, **FLOAT32_OPTIONS[option]).explain(images, TARGETS)
    assert torch.equal(fast.details["scored"], plain.details["scored"])
    assert torch.allclose(fast.details["channel_scores"], plain.details["channel_scores"], rtol=0, atol=1e-6)
    assert _relative(fast.maps, plain.maps) < 1e-4


def test_speed_options_match_the_plain_path_on_resnet18():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    images = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))  # layer3: 256 channels of 2x2
    plain = ScoreCAM(model, "layer3", batch_size=128, **PLAIN).explain(images, [7])
    fast = ScoreCAM(model, "layer3", batch_size=128).explain(images, [7])
    assert fast.details["scored"].sum() > 200
    assert _relative(fast.weights, plain.weights) < 1e-4
    assert _relative(fast.maps, plain.maps) < 1e-4


@pytest.mark.parametrize("dtype, tolerance", [("bf16", 1e-2), ("fp16", 2e-3)])
@pytest.mark.parametrize("method", ["Score-CAM", "Grad++ScoreCAM"])
def test_autocast_scores_within_tolerance(gap_net, images, method, dtype, tolerance):
    cls, options = METHODS[method]
    plain = cls(gap_net, "layer", **options, **PLAIN).explain(images, TARGETS)
    fast = cls(gap_net, "layer", **options, autocast=dtype).explain(images, TARGETS)
    assert _relative(fast.details["channel_scores"], plain.details["channel_scores"]) < tolerance
    if method == "Score-CAM":  # its weights are the scores themselves
        assert _relative(fast.maps, plain.maps) < tolerance


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype, tolerance", [("bf16", 1e-2), ("fp16", 2e-3)])
def test_autocast_on_gpu(gap_net, images, dtype, tolerance):
    model, gpu_images = gap_net.cuda(), images.cuda()
    flag = torch.backends.cudnn.benchmark
    plain = ScoreCAM(model, "layer", **PLAIN).explain(gpu_images, TARGETS)
    fast = ScoreCAM(model, "layer", autocast=dtype).explain(gpu_images, TARGETS)
    assert _relative(fast.maps, plain.maps) < tolerance
    assert torch.backends.cudnn.benchmark is flag


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("option", list(FLOAT32_OPTIONS))
def test_float32_speed_options_on_gpu(gap_net, images, option):
    model, gpu_images = gap_net.cuda(), images.cuda()
    plain = ScoreCAM(model, "layer", **PLAIN).explain(gpu_images, TARGETS)
    fast = ScoreCAM(model, "layer", **{**FLOAT32_OPTIONS[option], "cudnn_benchmark": True}).explain(gpu_images, TARGETS)
    # TF32 convolutions (PyTorch's default on Ampere and later) round to 10-bit mantissas.
    assert _relative(fast.maps, plain.maps) < 1e-2


def test_options_are_checked(gap_net):
    with pytest.raises(ValueError, match="autocast"):
        ScoreCAM(gap_net, "layer", autocast="fp8")
    with pytest.raises(TypeError, match="channels_last"):
        ScoreCAM(gap_net, "layer", channels_last="yes")
    with pytest.raises(ValueError, match="batch_size"):
        GradPlusPlusScoreCAM(gap_net, "layer", batch_size=0)
    assert ScoreCAM(gap_net, "layer", autocast="bf16").speed.autocast is torch.bfloat16
    assert ScoringSpeed.plain() == ScoringSpeed(**PLAIN)


# --------------------------------------------------------------------------- the user's model stays as it was
@pytest.mark.parametrize("method", ["Score-CAM", "Grad++ScoreCAM"])
def test_user_model_is_not_modified(gap_net, images, method):
    cls, options = METHODS[method]
    before = _params(gap_net)
    bn_count = sum(isinstance(m, nn.BatchNorm2d) for m in gap_net.modules())
    cls(gap_net, "layer", **options)(images)  # defaults: fused copy, channels-last inputs
    _assert_untouched(gap_net, before)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in gap_net.modules()) == bn_count


def test_user_model_is_not_modified_after_an_exception(gap_net, images):
    before = _params(gap_net)

    def interrupt(done: int, total: int) -> None:
        raise RuntimeError("stopped halfway")

    with pytest.raises(RuntimeError, match="halfway"):
        ScoreCAM(gap_net, "layer", batch_size=2, progress=interrupt)(images)
    _assert_untouched(gap_net, before)


def test_fused_copy_folds_batchnorm_and_computes_the_same_function(gap_net, images):
    fused = fuse_batchnorm(gap_net)
    assert fused is not None and fused is not gap_net
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    with torch.no_grad():
        assert torch.allclose(fused(images), gap_net(images), atol=1e-5)


def test_no_copy_without_batchnorm_or_with_hooks(vgg_net, gap_net):
    assert fuse_batchnorm(vgg_net) is None  # nothing to fold
    handle = gap_net.pool.register_forward_hook(lambda *_: None)
    try:
        assert fuse_batchnorm(gap_net) is None  # a traced copy would not call every hook
    finally:
        handle.remove()


def test_hooks_on_the_model_still_run_during_masked_passes(gap_net, images):
    calls = []
    handle = gap_net.register_forward_pre_hook(lambda _m, inputs: calls.append(inputs[0].shape[0]))
    try:
        explanation = ScoreCAM(gap_net, "layer", batch_size=8).explain(images, TARGETS)
    finally:
        handle.remove()
    assert sum(calls) == 3 + int(explanation.details["scored"].sum())  # the clean pass and every masked input


class _Untraceable(nn.Module):
    """BatchNorm and data-dependent control flow: torch.fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn(self.conv(x)))
        if y.sum() > 0:  # data-dependent branch
            y = y * 1.0
        return self.fc(y.mean(dim=(2, 3)))


def test_untraceable_model_falls_back_with_a_warning(images):
    torch.manual_seed(0)
    model = _Untraceable().eval()
    with pytest.warns(RuntimeWarning, match="cannot trace"):
        fast = ScoreCAM(model, "conv").explain(images, [1, 2, 3])
    plain = ScoreCAM(model, "conv", **PLAIN).explain(images, [1, 2, 3])
    assert _relative(fast.maps, plain.maps) < 1e-4
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ScoreCAM(model, "conv", fuse_batchnorm=False)(images)


def test_fused_copy_is_cached_and_rebuilt_when_the_model_changes(gap_net, images):
    cache = FusedModelCache()
    first = cache.get(gap_net, channels_last=True)
    assert cache.get(gap_net, channels_last=True) is first
    with torch.no_grad():
        gap_net.fc.weight.mul_(-1.0)  # an in-place edit: same storage, new version
    assert cache.get(gap_net, channels_last=True) is not first

    explainer = ScoreCAM(gap_net, "layer")
    explainer(images, TARGETS)  # builds the explainer's copy
    gap_net.load_state_dict({k: v * 0.5 if v.is_floating_point() else v for k, v in gap_net.state_dict().items()})
    again = explainer.explain(images, TARGETS)
    fresh = ScoreCAM(gap_net, "layer", **PLAIN).explain(images, TARGETS)
    assert _relative(again.maps, fresh.maps) < 1e-4  # never a stale copy


def test_explainers_of_one_model_share_its_copy_which_dies_with_the_model(images):
    model = small_gap_net()
    ScoreCAM(model, "layer")(images)
    copy = shared_cache(model)._fused
    assert copy is not None
    GradPlusPlusScoreCAM(model, "layer", max_channels=3)(images)
    assert shared_cache(model)._fused is copy  # made once per model, not per explainer or call
    alive = weakref.ref(copy)
    del model, copy
    gc.collect()
    assert alive() is None  # the cache does not keep the copy (or the model) alive


# ----------------------------------------------------------------------------------------------- cuDNN flag
def test_cudnn_benchmark_flag_is_set_on_cuda_only_and_restored():
    previous = torch.backends.cudnn.benchmark
    try:
        torch.backends.cudnn.benchmark = False
        with cudnn_benchmark(True, torch.device("cpu")):
            assert torch.backends.cudnn.benchmark is False
        with pytest.raises(RuntimeError), cudnn_benchmark(True, torch.device("cuda")):
            assert torch.backends.cudnn.benchmark is True
            raise RuntimeError("failure inside the block")
        assert torch.backends.cudnn.benchmark is False
        with cudnn_benchmark(False, torch.device("cuda")):
            assert torch.backends.cudnn.benchmark is False
    finally:
        torch.backends.cudnn.benchmark = previous


# --------------------------------------------------------------------------------------------------- memory
def _net_with_channels(k: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(3, k, 3, stride=2, padding=1),
            relu=nn.ReLU(),
            pool=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(),
            fc=nn.Linear(k, 4),
        )
    ).eval()


@pytest.mark.parametrize("channels_last", [False, True])
def test_masked_inputs_reuse_one_buffer_whatever_the_channel_count(channels_last):
    """Peak memory must not grow with K: every chunk of every K lands in the same (batch_size, C, H, W) buffer."""
    images = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    batch_size = 16
    for k in (64, 512):
        model = _net_with_channels(k)
        seen: list[tuple[int, int, bool]] = []

        def record(_module, inputs, seen=seen):
            x = inputs[0]
            seen.append((x.shape[0], x.data_ptr(), x.is_contiguous(memory_format=torch.channels_last)))

        maps = torch.rand(2, k, 6, 6, generator=torch.Generator().manual_seed(1))
        handle = model.register_forward_pre_hook(record)
        speed = ScoringSpeed(channels_last=channels_last, fuse_batchnorm=False)
        try:
            with fast_forward(model, images.device, speed) as forward:
                score_masked_inputs(forward, images, maps, torch.tensor([0, 1]), torch.ones(2, k, dtype=torch.bool),
                                    batch_size=batch_size)  # fmt: skip
        finally:
            handle.remove()
        assert len(seen) == 2 * k // batch_size
        assert max(size for size, _, _ in seen) == batch_size
        assert len({ptr for _, ptr, _ in seen}) == 1  # one buffer, reused
        assert all(is_cl == channels_last for _, _, is_cl in seen)  # built in the format the model runs in


@pytest.mark.parametrize("eps", [0.0, 1e-8])
def test_in_place_mask_normalisation_equals_minmax_normalize(eps):
    from gradscorecam.explainers.postprocess import minmax_normalize
    from gradscorecam.explainers.scoring import _minmax_normalize_

    maps = torch.randn(5, 9, 9, generator=torch.Generator().manual_seed(0))
    maps[1] = 0.25  # constant: must become zeros
    maps[2] = torch.linspace(0, 1e-30, 81).view(9, 9)  # tiny span
    assert torch.equal(_minmax_normalize_(maps.clone(), eps), minmax_normalize(maps, eps))


def test_padded_last_chunk_gives_the_same_scores_with_one_input_shape():
    """On CUDA with cuDNN autotuning every chunk runs at the full size (one autotuning run, not one per image);
    the padded rows are dropped, so the scores equal the unpadded ones. Checked on CPU by setting the flag."""
    images = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    model = _net_with_channels(24).eval()
    maps = torch.rand(2, 24, 6, 6, generator=torch.Generator().manual_seed(1))
    selected = torch.rand(2, 24, generator=torch.Generator().manual_seed(2)) > 0.3  # 2*24*0.7: a short last chunk
    targets = torch.tensor([0, 1])
    assert int(selected.sum()) % 8 != 0

    class Padded:
        pad_chunks = True
        memory_format = torch.contiguous_format
        sizes: list[int] = []

        def __call__(self, x: torch.Tensor) -> torch.Tensor:
            self.sizes.append(len(x))
            return model(x)

    padded = Padded()
    expected = score_masked_inputs(model, images, maps, targets, selected, batch_size=8)
    got = score_masked_inputs(padded, images, maps, targets, selected, batch_size=8)
    assert set(padded.sizes) == {8}
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-8)
    assert torch.count_nonzero(got) == int(selected.sum())
