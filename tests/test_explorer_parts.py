"""The explorer's parts without widgets: cache, class search, upload decoding, estimates, model adapters, wiring."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from conftest import small_gap_net
from PIL import Image
from torchvision import transforms

from gradscorecam import GradCAM, GradPlusPlusScoreCAM, ScoreCAM, SmoothGradCAMPlusPlus, make_explainer
from gradscorecam.errors import DataSourceError, GradScoreCAMError
from gradscorecam.explorer import (
    LoadedModel,
    LRUCache,
    ResultKey,
    Session,
    as_model_like,
    decode_image_bytes,
    estimate_seconds,
    find_classes,
)  # fmt: skip
from gradscorecam.explorer.compute import (
    _Stopped,
    budget_text,
    method_tag,
    parse_budget,
    run_method,
    stop_aware_progress,
)  # fmt: skip
from gradscorecam.explorer.sources import folder_images, upload_key, uploaded_files

ROOT = Path(__file__).resolve().parents[1]


def test_lru_cache_keeps_the_most_recently_used():
    cache: LRUCache[int] = LRUCache(2)
    a, b, c = (ResultKey("m", "l", "i", t, "Grad-CAM") for t in range(3))
    cache.put(a, 1)
    cache.put(b, 2)
    assert cache.get(a) == 1  # a is now the most recent
    cache.put(c, 3)
    assert a in cache and c in cache and b not in cache and len(cache) == 2
    with pytest.raises(RuntimeError):
        cache.get_or_compute(b, lambda: (_ for _ in ()).throw(RuntimeError("failed")))
    assert b not in cache  # a failed computation stores nothing
    cache.put(ResultKey("m", "l", "other", 0, "Grad-CAM"), 4)
    cache.discard_where(lambda key: key.image == "i")
    assert len(cache) == 1 and cache.get(ResultKey("m", "l", "other", 0, "Grad-CAM")) == 4


def test_find_classes_exact_then_prefix_then_substring():
    names = ["tiger shark", "tiger", "great white shark", "tiger cat", "shark"]
    assert find_classes(names, "Tiger") == [1, 0, 3]
    assert find_classes(names, "shark") == [4, 0, 2]
    assert find_classes(names, "3") == [3]
    assert find_classes(names, "  ") == []


def test_uploads_in_ipywidgets_8_and_7_formats():
    content = io.BytesIO()
    Image.new("L", (5, 4), 128).save(content, format="PNG")
    data = content.getvalue()
    v8 = ({"name": "a.png", "type": "image/png", "size": len(data), "content": memoryview(data)},)
    v7 = {"a.png": {"content": data, "metadata": {"name": "a.png"}}}
    assert uploaded_files(v8) == uploaded_files(v7) == [("a.png", data)]
    assert uploaded_files(()) == []
    image = decode_image_bytes(data, "a.png")
    assert image.mode == "RGB" and image.size == (5, 4)  # grayscale converted for the model
    with pytest.raises(DataSourceError, match="b.jpg"):
        decode_image_bytes(b"\xff\xd8\xff truncated", "b.jpg")
    assert upload_key("a.png", data) != upload_key("a.png", data + b"x")


def test_folder_images_lists_image_files(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "b.png")
    Image.new("RGB", (4, 4)).save(tmp_path / "a.JPG")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "c.png").write_bytes(b"broken")
    entries = folder_images(tmp_path)
    assert list(entries) == ["a.JPG", "b.png", "c.png"]
    assert entries["a.JPG"].load().size == (4, 4)
    with pytest.raises(DataSourceError, match="c.png"):
        entries["c.png"].load()
    with pytest.raises(DataSourceError, match="not found"):
        folder_images(tmp_path / "missing")


def test_model_mapping_adapter_names_missing_keys():
    spec = as_model_like(
        {"model": small_gap_net(), "transform": lambda im: im, "target_layer": "layer", "categories": ["a"] * 10,
         "mean": [0.5] * 3, "std": [0.5] * 3, "name": "net"}
    )  # fmt: skip
    assert spec.name == "net" and spec.categories == ("a",) * 10 and spec.mean == (0.5, 0.5, 0.5)
    with pytest.raises(GradScoreCAMError, match="transform"):
        as_model_like({"model": small_gap_net()}, where="net.py")
    with pytest.raises(GradScoreCAMError, match="categories"):
        as_model_like(object())


def test_estimates_grow_with_the_channels_to_score():
    per_pass, batch = 0.5, 32  # seconds for one forward pass of 32 images: 1/64 s per image
    assert estimate_seconds(ScoreCAM, 2048, {"max_channels": "all"}, per_pass, batch) == pytest.approx((2048 + 3) / 64)
    budget = estimate_seconds(GradPlusPlusScoreCAM, 2048, {"max_channels": 64}, per_pass, batch)
    assert budget == pytest.approx((64 + 3) / 64)
    assert estimate_seconds(GradPlusPlusScoreCAM, 40, {"max_channels": 64}, per_pass, batch) == pytest.approx(43 / 64)
    assert estimate_seconds(GradCAM, 2048, {}, per_pass, batch) == pytest.approx(3 / 64)
    assert estimate_seconds(SmoothGradCAMPlusPlus, 2048, {"n_samples": 25}, per_pass, batch) == pytest.approx(
        75 * 0.5 / 32
    )
    # the budget is part of the cache key, the batch size is not
    assert method_tag("Score-CAM", {"max_channels": 64, "batch_size": 8}) == method_tag(
        "Score-CAM", {"max_channels": 64, "batch_size": 2}
    )
    assert method_tag("Score-CAM", {"max_channels": 64}) != method_tag("Score-CAM", {"max_channels": "all"})


def explorer_session(**kwargs) -> Session:
    spec = LoadedModel(model=small_gap_net(), transform=transforms.ToTensor(), target_layer="block",
                       categories=tuple(map(str, range(10))), mean=(0.0,) * 3, std=(1.0,) * 3, name="tiny")  # fmt: skip
    session = Session({"tiny": lambda: spec}, {"grey": lambda: Image.new("RGB", (16, 16), 128)}, **kwargs)
    session.select_image("grey")
    session.select_model("tiny")
    return session


def test_no_budget_is_each_methods_default_and_all_is_every_channel():
    """None ("default" in the box) is not given: Score-CAM every channel, Grad++ScoreCAM 64; "all" is every channel.

    The explorer builds its explainers with the library's factory and keys and shows their effective options.
    """
    session = explorer_session()  # max_channels=None
    assert session.options("Grad++ScoreCAM")["max_channels"] == 64
    assert session.options("Score-CAM")["max_channels"] == "all"
    assert (
        session.options("Grad++ScoreCAM")
        == make_explainer("Grad++ScoreCAM", session.spec.model, "block", batch_size=32).options()
    )
    default_key = session.key("Grad++ScoreCAM")
    session.max_channels = 64  # the same explainer as the default: the same cached map
    assert session.key("Grad++ScoreCAM") == default_key
    session.max_channels = "all"
    assert session.options("Grad++ScoreCAM")["max_channels"] == "all" and session.key("Grad++ScoreCAM") != default_key
    result = session.compute("Grad++ScoreCAM")
    expected = GradPlusPlusScoreCAM(session.spec.model, "block", max_channels="all")(session.inputs, session.target)[0]
    torch.testing.assert_close(result.saliency, expected)
    assert result.options["max_channels"] == "all" and result.channels_total == 16
    assert result.describe().endswith(
        f"· {result.channels_scored} of 16 channels scored (budget: every non-constant channel)"
    )
    with pytest.raises(ValueError, match="all"):
        session.max_channels = 0


def test_the_channels_box_reads_default_all_or_a_number():
    assert parse_budget("default") is None and parse_budget(" ") is None
    assert parse_budget("All ") == "all" and parse_budget("64") == 64
    for bad in ("0", "-3", "many", "6.5"):
        with pytest.raises(
            GradScoreCAMError,
            match="default.*Score-CAM every non-constant channel, Grad\\+\\+ScoreCAM at most 64 channels",
        ):
            parse_budget(bad)
    assert [budget_text(b) for b in (None, "all", 16)] == ["default", "all", "16"]


def test_stop_request_ends_a_score_computation_and_restores_the_model(images):
    model = small_gap_net().train()
    calls = []

    def should_stop() -> bool:
        calls.append(1)
        return len(calls) > 1

    explainer = make_explainer(
        "Score-CAM", model, "layer", batch_size=2, progress=stop_aware_progress(None, should_stop)
    )
    with pytest.raises(_Stopped):
        run_method("Score-CAM", explainer, images, 1, should_stop=should_stop)
    assert len(calls) == 2  # checked before the start, and after the first chunk of 2 masked images
    assert model.training and all(p.requires_grad for p in model.parameters())


def test_default_explorer_uses_the_library_sources(monkeypatch):
    models = pytest.importorskip("gradscorecam.models")
    pytest.importorskip("gradscorecam.datasets")
    from gradscorecam.explorer import Explorer

    requested: list[tuple[str, object]] = []
    real = models.load_model

    def load_model(source, weights="DEFAULT", device="cpu"):
        requested.append((str(source), weights))
        return real("resnet18", weights=None, device=device)  # small, random, no download

    monkeypatch.setattr(models, "load_model", load_model)
    explorer = Explorer.default(("resnet50", "vgg16"), weights=None, background=False)
    assert list(explorer.model_dropdown.options) == ["resnet50", "vgg16"]
    assert requested == [("resnet50", None)]  # only the selected model was loaded
    d = explorer.displayed
    assert d.random_weights and d.layer == "layer4" and "Grad-CAM" in d.maps
    assert len(explorer.image_dropdown.options) >= 1 and d.image == explorer.image_dropdown.options[0]
