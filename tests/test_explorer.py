"""The classroom explorer, driven as a user would: set widget values, check what it shows and what it ran.

Tiny random networks (from conftest) and generated pictures; no browser. "What it shows" is read from
``explorer.displayed`` (the maps as the explainers returned them, the messages) and the widgets' values;
"what it ran" from ``explorer.explainer_calls``.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict

import numpy as np
import pytest
import torch
from conftest import small_gap_net, small_vgg_net
from PIL import Image
from torch import nn
from torchvision import transforms

from gradscorecam import CAM, GradCAM, GradCAMPlusPlus, GradPlusPlusScoreCAM, ScoreCAM, make_explainer
from gradscorecam.errors import DataSourceError
from gradscorecam.explainers.postprocess import minmax_normalize, upsample
from gradscorecam.explorer import Explorer, ImageEntry, LoadedModel
from gradscorecam.plotting import RANDOM_WEIGHTS_MARK

CATEGORIES = ("tabby cat", "tiger cat", "goldfish", "great white shark", "espresso", "cup", "coffee mug",
              "tiger", "tiger shark", "missile")  # fmt: skip
TRANSFORM = transforms.Compose(
    [
        transforms.Resize(24),
        transforms.CenterCrop(24),
        transforms.ToTensor(),
        transforms.Normalize([0.5] * 3, [0.5] * 3),
    ]
)
FAST_OPTIONS = {"SmoothGrad-CAM++": {"n_samples": 2}}


def tiny_spec(model=None, target_layer: str = "layer", name: str = "tiny", is_random: bool = True) -> LoadedModel:
    return LoadedModel(
        model=model if model is not None else small_gap_net(),
        transform=TRANSFORM,
        target_layer=target_layer,
        categories=CATEGORIES,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        name=name,
        is_random=is_random,
    )


def picture(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (30, 36, 3), dtype=np.uint8))


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def make():
    """Build an explorer on the tiny network and two pictures, computing in the callbacks (no thread)."""

    def build(**kwargs) -> Explorer:
        models = kwargs.pop("models", None) or {"tiny": tiny_spec}
        images = kwargs.pop("images", None) or {
            "noise-a": lambda: picture(1),
            "noise-b": ImageEntry(lambda: picture(2), 2),
        }
        kwargs.setdefault("options", FAST_OPTIONS)
        kwargs.setdefault("background", False)
        return Explorer(models, images, **kwargs)

    return build


def expected_map(explorer: Explorer, method=GradCAM, layer: str | None = None, target: int | None = None, **options):
    s = explorer.session
    saliency = method(s.spec.model, layer or s.layer, **options)(s.inputs, s.target if target is None else target)
    return saliency[0]


# ----------------------------------------------------------------------------------------- the main flow
def test_start_shows_the_default_layer_map_prediction_and_time(make):
    explorer = make()
    d = explorer.displayed
    assert (d.model, d.layer, d.image) == ("tiny", "layer", "noise-a")
    assert explorer.layer_dropdown.value == "layer"
    # the layer menu lists every layer with a 4-D output, with its shape
    labels = dict((value, label) for label, value in explorer.layer_dropdown.options)
    assert "fc" not in labels and "flatten" not in labels
    assert labels["layer"].startswith("layer") and "12×12×12" in labels["layer"]
    # the class list: the top 5 with probabilities, the top one selected
    probabilities = torch.softmax(explorer.session.spec.model(explorer.session.inputs), 1)[0]
    top = probabilities.argmax().item()
    assert explorer.class_dropdown.value == top == d.target
    first_label, first_value = explorer.class_dropdown.options[0]
    assert first_value == top and first_label == f"{CATEGORIES[top]} — {probabilities[top]:.2f}"
    assert d.prediction[0][:2] == (top, CATEGORIES[top])
    assert CATEGORIES[top] in explorer.status.value
    # the map shown is the explainer's output for this layer and class
    assert d.methods == ("Grad-CAM",) and explorer.explainer_calls == 1
    torch.testing.assert_close(d.maps["Grad-CAM"], expected_map(explorer))
    assert d.maps["Grad-CAM"].device.type == "cpu"
    assert d.seconds["Grad-CAM"] > 0
    assert d.png.startswith(b"\x89PNG") and explorer.maps_image.value == d.png
    assert not d.messages


def test_layer_change_gives_a_new_map_and_returning_uses_the_cache(make):
    explorer = make()
    first = explorer.displayed.maps["Grad-CAM"]
    explorer.layer_dropdown.value = "block"
    d = explorer.displayed
    assert d.layer == "block" and explorer.explainer_calls == 2
    torch.testing.assert_close(d.maps["Grad-CAM"], expected_map(explorer, layer="block"))
    assert not torch.allclose(d.maps["Grad-CAM"], first)
    explorer.layer_dropdown.value = "layer"  # computed before: from the cache
    assert explorer.explainer_calls == 2
    torch.testing.assert_close(explorer.displayed.maps["Grad-CAM"], first)


def test_opacity_change_redraws_without_recomputing(make):
    explorer = make(initial_methods=("Grad-CAM", "Score-CAM"))
    calls, renders = explorer.explainer_calls, explorer.displayed.renders
    maps = dict(explorer.displayed.maps)
    before = explorer.displayed.png
    explorer.opacity_slider.value = 0.9
    d = explorer.displayed
    assert explorer.explainer_calls == calls == 2
    assert d.renders == renders + 1 and d.opacity == 0.9
    assert all(d.maps[name] is maps[name] for name in maps)  # the very same cached tensors
    assert d.png != before and explorer.maps_image.value == d.png


def test_class_image_and_method_changes(make):
    explorer = make()
    s = explorer.session
    # another class from the top-5 list
    other = explorer.class_dropdown.options[2][1]
    explorer.class_dropdown.value = other
    assert explorer.displayed.target == other
    torch.testing.assert_close(explorer.displayed.maps["Grad-CAM"], expected_map(explorer, target=other))
    # a class found by typing part of its name, outside the top 5, joins the list
    outside = next(i for i in range(len(CATEGORIES)) if i not in [v for _, v in explorer.class_dropdown.options])
    explorer.class_search.value = CATEGORIES[outside]
    assert explorer.displayed.target == explorer.class_dropdown.value == outside
    assert outside in [v for _, v in explorer.class_dropdown.options]
    torch.testing.assert_close(explorer.displayed.maps["Grad-CAM"], expected_map(explorer, target=outside))
    # the image: new input, new prediction, its labelled class offered in the list
    explorer.image_dropdown.value = "noise-b"
    assert explorer.displayed.image == "noise-b" and s.label == 2
    options = [v for _, v in explorer.class_dropdown.options]
    assert 2 in options and outside in options  # the labelled class, and the class searched before
    assert len(options) <= 7  # top 5, label, searched: the previous image's top 5 do not pile up
    torch.testing.assert_close(explorer.displayed.maps["Grad-CAM"], expected_map(explorer))
    # several methods side by side, each with its own map and time
    explorer.method_checkboxes["Grad-CAM++"].value = True
    explorer.method_checkboxes["Grad++ScoreCAM"].value = True
    d = explorer.displayed
    assert d.methods == ("Grad-CAM", "Grad-CAM++", "Grad++ScoreCAM")
    assert set(d.maps) == set(d.seconds) == set(d.methods)
    torch.testing.assert_close(d.maps["Grad-CAM++"], expected_map(explorer, GradCAMPlusPlus))
    torch.testing.assert_close(d.maps["Grad++ScoreCAM"], expected_map(explorer, GradPlusPlusScoreCAM))


def test_class_search_by_substring(make):
    explorer = make()
    before = explorer.displayed.target
    explorer.class_search.value = "shark"  # two classes contain it: nothing chosen yet
    assert explorer.displayed.target == before
    explorer.class_search.value = "great white"
    assert explorer.displayed.target == 3
    explorer.class_search.value = "great white shark (3)"  # the option as the combobox lists it
    assert explorer.displayed.target == 3


def test_score_methods_report_progress_and_the_budget(make):
    explorer = make(initial_methods=("Score-CAM",), max_channels=5)
    assert explorer.channels_input.value == "5"
    seen: list[tuple[int, int]] = []
    explorer.progress.observe(lambda change: seen.append((change["new"], explorer.progress.max)), "value")
    explorer.layer_dropdown.value = "block"  # 16 channels, 5 scored, 2 per forward pass
    explorer.session.batch_size = 2
    explorer.layer_dropdown.value = "stem"
    assert seen and seen[-1][0] == seen[-1][1] <= 5
    assert explorer.progress.layout.display == "none"  # hidden again when done
    d = explorer.displayed
    result = d.results["Score-CAM"]
    assert result.channels_scored <= 5 and result.channels_total == 8 and result.options["max_channels"] == 5
    assert d.budgets == {"Score-CAM": 5, "Grad++ScoreCAM": 5} and "at most 5 channels" in explorer.budget_note.value
    torch.testing.assert_close(d.maps["Score-CAM"], expected_map(explorer, ScoreCAM, max_channels=5))
    # a new channel budget is a new result: "all" is every channel
    calls = explorer.explainer_calls
    explorer.channels_input.value = "all"
    assert (
        explorer.explainer_calls == calls + 1
        and explorer.displayed.results["Score-CAM"].options["max_channels"] == "all"
    )
    torch.testing.assert_close(
        explorer.displayed.maps["Score-CAM"], expected_map(explorer, ScoreCAM, max_channels="all")
    )
    # "default": each method its own budget, and the explorer says which: Score-CAM all (the same map, cached),
    # Grad++ScoreCAM 64 (more than the 8 channels of this layer: all of them)
    explorer.channels_input.value = "default"
    d = explorer.displayed
    assert explorer.explainer_calls == calls + 1 and explorer.session.max_channels is None
    assert d.budgets == {"Score-CAM": "all", "Grad++ScoreCAM": 64}
    assert (
        "Score-CAM: every non-constant channel" in explorer.budget_note.value
        and "Grad++ScoreCAM: at most 64 channels" in explorer.budget_note.value
    )
    explorer.method_checkboxes["Grad++ScoreCAM"].value = True
    result = explorer.displayed.results["Grad++ScoreCAM"]
    assert result.options["max_channels"] == 64 and result.describe().endswith(
        "of 8 channels scored (budget: at most 64 channels)"
    )
    torch.testing.assert_close(result.saliency, expected_map(explorer, GradPlusPlusScoreCAM, batch_size=2))
    # a budget the box cannot mean is a message naming the choices, and the box shows the budget in force
    explorer.channels_input.value = "0"
    d = explorer.displayed
    assert d.level == "error" and '"all" (every channel)' in d.messages[0] and '"default"' in d.messages[0]
    assert explorer.channels_input.value == "default" and explorer.session.max_channels is None


# ------------------------------------------------------------------------------------------- teaching view
def test_teaching_view_shows_the_best_channels_their_masks_and_scores(make):
    explorer = make(initial_methods=("Score-CAM", "Grad++ScoreCAM", "Grad-CAM++"), teaching_channels=3)
    s, d = explorer.session, explorer.displayed
    size = tuple(s.inputs.shape[-2:])
    # Score-CAM: the channels with the highest scores, the mask each input was multiplied with, its score
    explanation = ScoreCAM(s.spec.model, "layer").explain(s.inputs, s.target)
    scores = explanation.details["channel_scores"][0]
    view = d.teaching["Score-CAM"]
    assert view.kind == "scores" and len(view.channels) == 3
    assert list(view.channels) == scores.masked_fill(~explanation.details["scored"][0], -1).topk(3).indices.tolist()
    torch.testing.assert_close(torch.tensor(view.values), scores[list(view.channels)])
    masks = minmax_normalize(upsample(explanation.activations[0, list(view.channels)], size))
    torch.testing.assert_close(view.masks, masks)
    # Grad++ScoreCAM: its α = score − baseline and gradient masks
    details = GradPlusPlusScoreCAM(s.spec.model, "layer").explain(s.inputs, s.target).details
    view = d.teaching["Grad++ScoreCAM"]
    torch.testing.assert_close(torch.tensor(view.values), details["scores"][0][list(view.channels)])
    assert view.baseline == pytest.approx(float(details["baseline_score"][0]))
    # Grad-CAM++: the channel weights
    weights = GradCAMPlusPlus(s.spec.model, "layer").explain(s.inputs, s.target).weights[0]
    view = d.teaching["Grad-CAM++"]
    assert view.kind == "weights" and list(view.channels) == weights.topk(3).indices.tolist()
    torch.testing.assert_close(view.all_values, weights)
    assert "Grad-CAM++" in explorer.teaching_notes.value and bytes(explorer.teaching_image.value).startswith(b"\x89PNG")


# ------------------------------------------------------------------------------------------------- errors
def test_bad_upload_is_a_message_and_a_good_one_is_explained(make):
    explorer = make()
    shown = explorer.displayed.maps["Grad-CAM"]
    explorer.upload_file("holiday.jpg", b"this is not a picture")
    d = explorer.displayed
    assert d.level == "error" and "holiday.jpg" in d.messages[0] and "cannot read" in d.messages[0]
    assert "holiday.jpg" in explorer.message.value
    assert d.image == "noise-a" and d.maps["Grad-CAM"] is shown  # nothing else changed
    # the explorer keeps working: a real upload is selected and explained
    explorer.upload_file("cat.png", png(picture(7)))
    d = explorer.displayed
    assert not d.messages and d.image.startswith("upload: cat.png")
    assert explorer.image_dropdown.value == d.image
    torch.testing.assert_close(d.maps["Grad-CAM"], expected_map(explorer))


def test_unreadable_image_keeps_the_previous_one(make):
    def broken() -> Image.Image:
        raise DataSourceError("cannot read image file /nowhere/missing.jpg")

    explorer = make(images={"ok": lambda: picture(1), "missing": broken})
    explorer.image_dropdown.value = "missing"
    d = explorer.displayed
    assert d.level == "error" and "missing.jpg" in d.messages[0]
    assert d.image == "ok" == explorer.image_dropdown.value and "Grad-CAM" in d.maps


def test_layer_without_4d_output_is_a_message(make):
    explorer = make()
    explorer.select(layer="fc")
    d = explorer.displayed
    assert d.level == "error" and "no 4-D" in d.messages[0]
    assert d.layer == "layer" == explorer.layer_dropdown.value and "Grad-CAM" in d.maps
    # a model whose default layer has no 4-D output starts on the last layer that has one, and says so
    explorer = make(models={"flat default": lambda: tiny_spec(target_layer="fc")})
    assert explorer.displayed.layer == "pool" and "no 4-D" in explorer.displayed.messages[0]


def test_cam_on_a_vgg_like_model_is_a_message_in_its_panel(make):
    explorer = make(
        models={"vgg-like": lambda: tiny_spec(small_vgg_net(), target_layer="features")},
        initial_methods=("CAM", "Grad-CAM"),
    )
    d = explorer.displayed
    assert "CAM is not defined" in d.errors["CAM"] and "CAM" not in d.maps
    torch.testing.assert_close(d.maps["Grad-CAM"], expected_map(explorer))
    calls = explorer.explainer_calls
    explorer.opacity_slider.value = 0.3
    explorer.method_checkboxes["Grad-CAM++"].value = True  # the known failure is not run again
    assert explorer.explainer_calls == calls + 1 and "CAM is not defined" in explorer.displayed.errors["CAM"]


def test_a_method_that_cannot_be_built_for_the_model_is_a_message_in_its_panel(make):
    no_linear = nn.Sequential(OrderedDict(features=nn.Sequential(nn.Conv2d(3, 10, 3, padding=1), nn.ReLU()),
                                          pool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten()))  # fmt: skip
    explorer = make(models={"squeezenet-like": lambda: tiny_spec(no_linear.eval(), target_layer="features")},
                    initial_methods=("CAM", "Grad-CAM", "Score-CAM"))  # fmt: skip
    d = explorer.displayed
    assert "no nn.Linear" in d.errors["CAM"] and "CAM" not in d.maps and not d.messages
    torch.testing.assert_close(d.maps["Grad-CAM"], expected_map(explorer))
    torch.testing.assert_close(d.maps["Score-CAM"], expected_map(explorer, ScoreCAM))
    assert d.budgets == {"Score-CAM": "all", "Grad++ScoreCAM": 64}


def test_broken_model_factory_is_a_message(make):
    def broken():
        return {"model": small_gap_net()}  # a build_model() mapping missing its other keys

    explorer = make(models={"tiny": tiny_spec, "broken": broken})
    explorer.model_dropdown.value = "broken"
    d = explorer.displayed
    assert d.level == "error" and "transform" in d.messages[0]
    assert d.model == "tiny" == explorer.model_dropdown.value and "Grad-CAM" in d.maps


# --------------------------------------------------------------------------------------- long computations
def test_slow_score_methods_wait_for_compute_anyway(make):
    explorer = make(initial_methods=("Grad-CAM", "Score-CAM"), warn_seconds=0.0)
    d = explorer.displayed
    assert "Grad-CAM" in d.maps and "Score-CAM" in d.pending and explorer.explainer_calls == 1
    assert d.level == "warning" and "Compute anyway" in d.messages[0] and "channels" in d.messages[0]
    assert explorer.compute_button.layout.display != "none"
    explorer.opacity_slider.value = 0.2  # still nothing computed
    assert explorer.explainer_calls == 1
    explorer.compute_button.click()
    assert explorer.explainer_calls == 2 and "Score-CAM" in explorer.displayed.maps
    assert explorer.compute_button.layout.display == "none"


def interrupting_factory(armed: dict[str, bool]):
    """The library's factory, but a score-based method's third progress report comes with a kernel interrupt
    (Ctrl-C, the ■ button) while ``armed["on"]``."""

    def factory(method, model, layer, *, progress=None, **kwargs):
        def report(done: int, total: int) -> None:
            if armed["on"] and done > 2:
                raise KeyboardInterrupt
            if progress:
                progress(done, total)

        return make_explainer(method, model, layer, progress=report, **kwargs)

    return factory


def test_kernel_interrupt_leaves_a_message_a_clean_cache_and_a_working_explorer(make):
    armed = {"on": True}
    explorer = make(methods=("Grad-CAM", "Score-CAM"), initial_methods=("Grad-CAM",), batch_size=2,
                    factory=interrupting_factory(armed))  # fmt: skip
    model = explorer.session.spec.model
    explorer.method_checkboxes["Score-CAM"].value = True
    d = explorer.displayed
    assert "interrupted" in d.messages[0] and "Score-CAM" in d.pending and "Score-CAM" not in d.maps
    assert explorer.session.cached("Score-CAM") is None  # nothing half-done in the cache
    assert all(p.requires_grad for p in model.parameters()) and not model.training  # the model as it was
    assert explorer.progress.layout.display == "none"
    # the explorer keeps working, and the interrupted method can be run again
    explorer.layer_dropdown.value = "block"
    torch.testing.assert_close(explorer.displayed.maps["Grad-CAM"], expected_map(explorer, layer="block"))
    armed["on"] = False
    explorer.layer_dropdown.value = "layer"
    explorer.compute()
    torch.testing.assert_close(explorer.displayed.maps["Score-CAM"], expected_map(explorer, ScoreCAM, batch_size=2))


def holding_factory(started: threading.Event, explorer_of: dict):
    """The library's factory, but the first score-based computation holds at its first progress report until
    a stop is requested (the Stop button), so the test presses it while the method is surely running."""

    def factory(method, model, layer, *, progress=None, **kwargs):
        def report(done: int, total: int) -> None:
            if not started.is_set():
                started.set()
                explorer_of["explorer"].controller.stop_requested.wait(30)
            if progress:
                progress(done, total)

        return make_explainer(method, model, layer, progress=report, **kwargs)

    return factory


def test_stop_button_stops_a_background_computation(make):
    started, explorer_of = threading.Event(), {}
    explorer = make(methods=("Grad-CAM", "Score-CAM"), batch_size=1, background=True,
                    factory=holding_factory(started, explorer_of))  # fmt: skip
    explorer_of["explorer"] = explorer
    assert explorer.wait(30)
    explorer.method_checkboxes["Score-CAM"].value = True
    assert started.wait(30)
    assert explorer.stop_button.layout.display != "none"
    explorer.stop_button.click()
    assert explorer.wait(30)
    d = explorer.displayed
    assert "interrupted" in " ".join(d.messages) and "Score-CAM" not in d.maps and "Grad-CAM" in d.maps
    assert explorer.session.cached("Score-CAM") is None
    assert explorer.stop_button.layout.display == "none"
    explorer.layer_dropdown.value = "block"  # still works, in the background as well
    assert explorer.wait(30)
    torch.testing.assert_close(explorer.displayed.maps["Grad-CAM"], expected_map(explorer, layer="block"))


def test_random_weights_are_labelled(make):
    explorer = make()
    assert explorer.displayed.random_weights
    assert RANDOM_WEIGHTS_MARK in explorer.random_banner.value and explorer.random_banner.layout.display != "none"
    explorer = make(models={"trained": lambda: tiny_spec(is_random=False)})
    assert not explorer.displayed.random_weights and explorer.random_banner.layout.display == "none"


def test_model_file_box_and_image_folder_box(make, tmp_path):
    for i in range(2):
        picture(10 + i).save(tmp_path / f"photo{i}.png")
    loaded: list[str] = []

    def model_loader(path: str):
        loaded.append(path)
        return {"model": small_gap_net(seed=3), "transform": TRANSFORM, "target_layer": "block",
                "categories": CATEGORIES, "mean": (0.5,) * 3, "std": (0.5,) * 3, "name": "from file"}  # fmt: skip

    from gradscorecam.explorer.sources import folder_images

    explorer = make(model_loader=model_loader, image_source_loader=folder_images)
    explorer.model_file.value = "/somewhere/net.py"
    explorer.model_file_button.click()
    assert loaded == ["/somewhere/net.py"] and explorer.displayed.model == "file: net.py"
    assert explorer.displayed.layer == "block"
    explorer.image_source.value = str(tmp_path)
    explorer.image_source_button.click()
    assert explorer.displayed.image == "photo0.png" and "photo1.png" in explorer.image_dropdown.options
    torch.testing.assert_close(explorer.displayed.maps["Grad-CAM"], expected_map(explorer))
    # another folder with its own photo0.png: the new picture is shown and explained, not the cached one
    other = tmp_path / "other"
    other.mkdir()
    picture(99).save(other / "photo0.png")
    before = explorer.session.inputs.clone()
    explorer.image_source.value = str(other)
    explorer.image_source_button.click()
    assert explorer.displayed.image == "photo0.png" and not torch.equal(explorer.session.inputs, before)
    torch.testing.assert_close(explorer.displayed.maps["Grad-CAM"], expected_map(explorer))
    explorer.image_source.value = str(tmp_path / "nothing-here")
    explorer.image_source_button.click()
    assert explorer.displayed.level == "error" and "not found" in explorer.displayed.messages[0]


def test_every_method_can_be_shown(make):
    explorer = make()
    explorer.select(methods=list(explorer.method_checkboxes))
    d = explorer.displayed
    assert set(d.maps) == set(explorer.method_checkboxes) and not d.errors
    torch.testing.assert_close(d.maps["CAM"], expected_map(explorer, CAM))
