"""Small models built in the tests: nothing is downloaded, every weight is random or set by hand."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn
from torchvision import transforms

from gradscorecam.datasets import ImageRecord
from gradscorecam.models import ModelSpec


def small_gap_net(num_classes: int = 10, seed: int = 0) -> nn.Module:
    """A ResNet-shaped toy: conv blocks, then global average pooling and one linear layer (CAM applies).

    BatchNorm running statistics are randomised so that eval mode really differs from train mode.
    """
    torch.manual_seed(seed)
    model = nn.Sequential(
        OrderedDict(
            stem=nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()),
            block=nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU()),
            layer=nn.Sequential(nn.Conv2d(16, 12, 3, padding=1), nn.ReLU(inplace=True)),
            pool=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(),
            fc=nn.Linear(12, num_classes),
        )
    )
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model.eval()


def small_vgg_net(num_classes: int = 10, seed: int = 0) -> nn.Module:
    """A VGG-shaped toy: conv features, flatten and a two-layer classifier (CAM does not apply)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        OrderedDict(
            features=nn.Sequential(
                nn.Conv2d(3, 8, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
                nn.Conv2d(8, 12, 3, padding=1),
                nn.ReLU(inplace=True),
            ),
            pool=nn.AdaptiveAvgPool2d(4),
            flatten=nn.Flatten(),
            classifier=nn.Sequential(nn.Linear(12 * 16, 24), nn.ReLU(inplace=True), nn.Linear(24, num_classes)),
        )
    ).eval()


@pytest.fixture
def one_thread():
    """Tiny models: on a busy 2-core machine OpenMP's second thread slows them down many times over."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def random_image_records(
    folder: Path, n: int, size: int = 16, class_index: int = 1, prefix: str = "im"
) -> list[ImageRecord]:
    """``n`` seeded random RGB photographs of ``size`` x ``size`` saved as ``folder/<i>.png``, as image records."""
    records = []
    for i in range(n):
        path = folder / f"{i}.png"
        Image.fromarray((np.random.default_rng(i).random((size, size, 3)) * 255).astype("uint8")).save(path)
        records.append(ImageRecord(f"{prefix}{i}", path, class_index))
    return records


def tiny_spec(model: nn.Module, layer: str, name: str = "tiny (test)", classes: int = 10) -> ModelSpec:
    """A ModelSpec around a test model: ToTensor only (mean 0, std 1), random-weights tag."""
    return ModelSpec(
        model=model, transform=transforms.ToTensor(), target_layer=layer,
        categories=tuple(f"class {i}" for i in range(classes)), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
        name=name, weights="random (test)",
    )  # fmt: skip


@pytest.fixture
def gap_net() -> nn.Module:
    return small_gap_net()


@pytest.fixture
def vgg_net() -> nn.Module:
    return small_vgg_net()


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))


_TORCHVISION_LAYERS = {"resnet18": "layer4", "vgg11": "features.19", "alexnet": "features.11"}


@pytest.fixture(scope="session")
def torchvision_models() -> dict[str, tuple[nn.Module, str]]:
    """Random-weight torchvision networks (weights=None: no download) with their usual CAM layer."""
    torch.manual_seed(0)
    return {
        name: (torchvision.models.get_model(name, weights=None).eval(), layer)
        for name, layer in _TORCHVISION_LAYERS.items()
    }
