"""Model sources: torchvision names (random or cached weights, never a download), external files."""

from __future__ import annotations

import textwrap
from pathlib import Path
from urllib.error import URLError

import pytest
import torch
import torchvision

from gradscorecam.errors import ModelSourceError, WeightsUnavailableError
from gradscorecam.models import RANDOM_TAG, default_target_layer, load_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def offline_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub folder, and a download function that fails as it does offline."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_network(url: str, dst: str, *args: object, **kwargs: object) -> None:
        raise URLError("no network in tests")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return tmp_path / "torch" / "hub" / "checkpoints"


def test_random_weights_are_marked_seeded_and_have_imagenet_metadata():
    spec = load_model("resnet18", weights=None)
    assert spec.is_random and spec.weights == RANDOM_TAG
    assert spec.target_layer == "layer4" and spec.name == "resnet18"
    assert len(spec.categories) == 1000 and spec.categories[0] == "tench"
    assert spec.mean == pytest.approx((0.485, 0.456, 0.406)) and spec.std == pytest.approx((0.229, 0.224, 0.225))
    assert not spec.model.training
    again = load_model("resnet18", weights=None)
    assert torch.equal(spec.model.conv1.weight, again.model.conv1.weight)  # one fixed random network


def test_default_target_layers_per_family():
    with torch.device("meta"):  # architecture only: nothing allocated
        vgg16, alexnet, resnet50 = (torchvision.models.get_model(n) for n in ("vgg16", "alexnet", "resnet50"))
    assert default_target_layer("vgg16", vgg16) == "features.29"
    assert default_target_layer("alexnet", alexnet) == "features.11"
    assert default_target_layer("resnet50", resnet50) == "layer4"
    small = torchvision.models.get_model("mobilenet_v3_small").eval()
    assert default_target_layer("mobilenet_v3_small", small) == "features"


def test_offline_without_cache_names_file_folder_and_fix(offline_hub: Path):
    with pytest.raises(WeightsUnavailableError) as info:
        load_model("resnet18")
    message = str(info.value)
    assert "resnet18-f37072fd.pth" in message and str(offline_hub) in message
    assert "TORCH_HOME" in message and "copy it" in message and "URLError" in message
    assert isinstance(info.value, FileNotFoundError)


def test_cached_weights_are_used_without_download(offline_hub: Path):
    offline_hub.mkdir(parents=True)
    reference = torchvision.models.resnet18(weights=None)
    torch.save(reference.state_dict(), offline_hub / "resnet18-f37072fd.pth")
    spec = load_model("resnet18", weights="IMAGENET1K_V1")
    assert spec.weights == "IMAGENET1K_V1" and not spec.is_random
    assert torch.equal(spec.model.fc.weight, reference.fc.weight)
    assert load_model("resnet18", weights="ResNet18_Weights.DEFAULT").weights == "IMAGENET1K_V1"


def test_unknown_names_and_weights():
    with pytest.raises(ModelSourceError, match="resnet50"):
        load_model("resnet05")
    with pytest.raises(ModelSourceError, match="IMAGENET1K_V1"):
        load_model("resnet18", weights="IMAGENET9K")


EXTERNAL = """
import torch
from torch import nn
from torchvision import transforms as T

def build_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    spec = dict(model=model, transform=T.Compose([T.Resize(16), T.CenterCrop(16), T.ToTensor(), T.Normalize([0.5] * 3, [0.2] * 3)]),
                target_layer="1", categories=["a", "b", "c"], mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2), name="toy")
    spec.update(OVERRIDE)
    for key in DROP:
        del spec[key]
    return spec
"""


def _external(tmp_path: Path, override: str = "{}", drop: str = "()") -> Path:
    path = tmp_path / "my_model.py"
    path.write_text(f"OVERRIDE = {override}\nDROP = {drop}\n" + textwrap.dedent(EXTERNAL))
    return path


def test_external_model_file(tmp_path: Path):
    path = _external(tmp_path)
    spec = load_model(path)
    assert spec.name == "toy" and spec.target_layer == "1" and spec.categories == ("a", "b", "c")
    assert spec.weights == f"external: {path.resolve()}" and not spec.is_random
    assert spec.std == (0.2, 0.2, 0.2)
    with pytest.raises(ModelSourceError, match="torchvision models only"):
        load_model(path, weights=None)


@pytest.mark.parametrize(
    ("override", "drop", "pattern"),
    [
        ("{}", "('std', 'name')", r"missing the key\(s\) 'std', 'name'"),
        ("{'categories': ['a', 'b']}", "()", r"\['categories'\] has 2 names but the model gives 3"),
        ("{'target_layer': 'layer4'}", "()", r"\['target_layer'\]: no layer named 'layer4'"),
        ("{'mean': (0.5,)}", "()", r"\['mean'\] has 1 values but the transform gives 3"),
        ("{'model': 'not a model'}", "()", r"\['model'\] is a str"),
    ],
)
def test_external_model_validation_names_file_and_key(tmp_path: Path, override: str, drop: str, pattern: str):
    path = _external(tmp_path, override, drop)
    with pytest.raises(ModelSourceError, match=pattern) as info:
        load_model(path)
    assert str(path.resolve()) in str(info.value)


def test_external_file_problems(tmp_path: Path):
    with pytest.raises(ModelSourceError, match="not found"):
        load_model(tmp_path / "absent.py")
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    with pytest.raises(ModelSourceError, match="no build_model"):
        load_model(empty)
    broken = tmp_path / "broken.py"
    broken.write_text("def build_model():\n    raise RuntimeError('weights missing')\n")
    with pytest.raises(ModelSourceError, match="weights missing"):
        load_model(broken)
