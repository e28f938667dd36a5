"""The evaluation runner: methods x images on one model, one results row per (image, method), resumable.

>>> from gradscorecam import load_model, evaluate, summarize
>>> from gradscorecam.datasets import labels_csv, sample
>>> spec = load_model("resnet50")
>>> records = sample(labels_csv("labels.csv"), 1000, seed=0)
>>> df = evaluate(spec, records, ["Grad-CAM", "Score-CAM"], "results/resnet50.csv")
>>> summarize(df)

Each row holds the image (``image_id``, true ``label``, explained ``class_index``, ``predicted``), the
``method``, the faithfulness scores Y and O with the image's ``drop`` and ``increase`` (percent, see
:mod:`gradscorecam.metrics.faithfulness`), ``deletion_auc`` and ``insertion_auc``, ``pointing_hit`` and
``energy_pointing`` when the image has boxes the transform can map (boxes are those of the true
class, as ImageNet gives them, also when the predicted class is explained), ``objects_found`` and
``min_object_energy`` (:func:`gradscorecam.metrics.object_scores`, Figure 5 as a number) when it has at least
two such boxes *and* the explained class is the labelled one (otherwise the boxes are not the objects of the
explained class: NaN, with a note; ``target_class="label"`` scores every such image), ``seconds`` (the explanation) and
``metric_seconds``, a ``note`` (why a row has no values, e.g. CAM on VGG16; ``all-zero map`` when the map is
zero everywhere, e.g. every channel weight <= 0: deletion/insertion and the pointing games are then NaN,
Y, O, drop and increase are kept, ``objects_found`` is 0 and ``min_object_energy`` NaN), the configuration (:data:`gradscorecam.results.CONFIG_KEYS`, with every
explainer's effective options) and, as provenance that may differ between the parts of a resumed run,
``library_version`` (with the git commit of a development checkout), ``torch_version`` and ``device``.

**Crash-safe and resumable.** Every row is appended and flushed as soon as it is computed. Rerunning the
same call reads the file, drops a torn last line left by a crash, and skips the (image, method) pairs
already there, so a run killed at any point and restarted ends with exactly the rows of an uninterrupted
run. The configuration is kept in the rows and in a sidecar ``<out>.config.json``; a call with another
configuration raises :class:`~gradscorecam.errors.ResultsMismatchError` naming the keys (and explainer
options) that differ,
instead of mixing results (pass another ``out_path``, or ``overwrite=True`` to discard the file). A
``.parquet`` ``out_path`` is journaled to ``<out>.journal.csv`` while running and written at the end.

An image that cannot be read stops the run with a DataSourceError naming the file; the rows before it
are kept, so fix or drop the image and rerun.

**Shards** (SLURM job arrays): ``shard_index=i, num_shards=n`` evaluates records ``i, i+n, i+2n, ...``;
give every shard its own ``out_path`` and combine them with :func:`gradscorecam.results.merge_results`.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import torch

from .datasets.records import ImageRecord, check_class_indices, load_batch
from .datasets.sampling import write_image_list
from .errors import InputImageError, UnsupportedModelError
from .explainers import METHODS, BaseCAM, make_explainer
from .metrics.deletion import deletion_auc, insertion_auc
from .metrics.faithfulness import MASKINGS, SCORES, drop_percent, explanation_scores, increase_percent
from .metrics.localization import energy_pointing_game, object_scores, pointing_game
from .models import ModelSpec
from .results import DEGENERATE_NOTE, METRIC_COLUMNS, ResultsStore
from .torchutils import synchronize
from .version import library_version

TargetChoice = Literal["predicted", "label"]


def evaluate(
    spec: ModelSpec,
    records: Sequence[ImageRecord],
    methods: Sequence[str] | str,
    out_path: str | Path,
    *,
    device: str | torch.device = "cpu",
    batch_size: int = 32,
    score: str = "probability",
    masking: str = "normalized",
    top_percent: float | None = None,
    target_class: TargetChoice = "predicted",
    seed: int = 0,
    deletion_steps: int | None = 100,
    explainer_options: Mapping[str, Mapping[str, Any]] | None = None,
    target_layer: str | None = None,
    shard_index: int = 0,
    num_shards: int = 1,
    overwrite: bool = False,
    progress: bool = True,
) -> pd.DataFrame:
    """Evaluate ``methods`` on ``spec``'s model over ``records``, appending rows to ``out_path``; returns all rows.

    Args:
        spec: the model (:func:`gradscorecam.models.load_model`).
        records: the images (an image source, possibly :func:`~gradscorecam.datasets.sample`-d).
        methods: display names from :data:`gradscorecam.METHODS`, or ``"all"``.
        out_path: a ``.csv`` or ``.parquet`` file; the chosen image ids go to ``<out>.images.csv`` beside it.
        device: where the model and images go (``"cpu"``, ``"cuda"``).
        batch_size: inputs per forward pass for the score-based explainers, SmoothGrad-CAM++ and the
            metrics: it bounds (GPU) memory.
        score, masking, top_percent: the Average Drop/Increase options (:mod:`gradscorecam.metrics`).
        target_class: explain the model's ``"predicted"`` class (as Grad-CAM++ and Score-CAM evaluate) or the
            true ``"label"``; Y and O are scores of the explained class.
        seed: seeds torch before every (image, method), so random parts (SmoothGrad-CAM++'s noise unless it
            has its own seed) do not depend on where a run was resumed. Record here the seed used to sample.
        deletion_steps: steps of the deletion/insertion curves; ``None`` or 0 skips them (faster).
        explainer_options: per method name, keyword arguments for its class (e.g.
            ``{"Grad++ScoreCAM": {"max_channels": 64}}``). Every explainer is built by
            :func:`~gradscorecam.explainers.make_explainer` (with ``batch_size``), and what the configuration
            records is each one's *effective* options, ``explainer.options()``, defaults included, so that a
            changed default is a changed configuration (see :func:`make_config`).
        target_layer: override ``spec.target_layer``.
        shard_index, num_shards: evaluate only records ``shard_index::num_shards``.
        overwrite: discard an existing results file of another configuration instead of raising.
        progress: show a tqdm bar (images done, rate, time left); works in notebooks and terminals.
    """
    names = _method_names(methods)
    if score not in SCORES or masking not in MASKINGS:
        raise ValueError(f"score must be one of {SCORES} and masking one of {MASKINGS}, got {score!r}, {masking!r}")
    if target_class not in ("predicted", "label"):
        raise ValueError(f"target_class must be 'predicted' or 'label', got {target_class!r}")
    if not 0 <= shard_index < num_shards:
        raise ValueError(f"need 0 <= shard_index < num_shards, got {shard_index} and {num_shards}")
    unknown = set(explainer_options or {}) - set(names)
    if unknown:
        raise ValueError(f"explainer_options for methods not evaluated: {sorted(unknown)}")
    check_class_indices(records, len(spec.categories))  # labels of another data set fail here, naming the line
    layer = target_layer or spec.target_layer
    model = spec.model.to(device).eval()
    given = {name: dict((explainer_options or {}).get(name, {})) for name in names}
    explainers = {name: _build_explainer(name, model, layer, batch_size, given[name]) for name in names}
    options = {name: _recorded_options(explainers[name], given[name]) for name in names}
    config = make_config(spec, layer, target_class, score, masking, top_percent, seed, deletion_steps)
    environment = {"library_version": library_version(), "torch_version": torch.__version__, "device": str(device)}
    if spec.is_random:
        warnings.warn(f"{spec.name} has random weights ({spec.weights}); every row records it.", stacklevel=2)

    store = ResultsStore(Path(out_path), config, options=options, overwrite=overwrite)
    shard = list(records)[shard_index::num_shards]
    write_image_list(shard, store.images_path)
    done = store.done_pairs()
    todo = [r for r in shard if any((r.image_id, m) not in done for m in names)]

    if torch.device(device).type == "cuda" and todo:
        _warm_up(explainers.values(), spec, todo[0], device)
    bar = _progress_bar(len(shard), len(shard) - len(todo), progress)
    try:
        for record in todo:
            images, boxes = load_batch([record], spec.transform)
            images = images.to(device)
            with torch.no_grad():
                predicted = int(model(images).argmax(1).item())
            target = predicted if target_class == "predicted" else record.class_index
            for name in names:
                if (record.image_id, name) in done:
                    continue
                bar.set_postfix_str(f"{record.image_id[-24:]} {name}", refresh=False)
                torch.manual_seed(seed)
                try:
                    row = _evaluate_one(
                        explainers[name],
                        name,
                        spec,
                        images,
                        target,
                        record.class_index,
                        boxes[0],
                        device,
                        batch_size,
                        score,
                        masking,
                        top_percent,
                        deletion_steps,
                    )
                except InputImageError as error:  # say which image: the explainer only sees "item 0"
                    where = record.origin or record.path
                    raise InputImageError(f"image {record.image_id} ({where}): {error}") from error
                store.append({"image_id": record.image_id, "label": record.class_index, "class_index": target,
                              "predicted": predicted, "method": name, **row, **config,
                              "explainer_options": json.dumps(options[name], sort_keys=True, default=str),
                              **environment})  # fmt: skip
            bar.update(1)
    finally:
        bar.close()
        store.finish()
    return store.read()


def make_config(
    spec: ModelSpec,
    target_layer: str,
    target_class: str,
    score: str,
    masking: str,
    top_percent: float | None,
    seed: int,
    deletion_steps: int | None,
) -> dict[str, Any]:
    """The configuration shared by every row (:data:`gradscorecam.results.CONFIG_KEYS`), with values as the CSV
    gives them back.

    Beside it each row records its explainer's effective options, ``explainer_options`` (sorted JSON of
    ``explainer.options()``, the class's defaults included, less :data:`NOT_RECORDED`; for a method that could
    not be built for the model, the options it was given), so a results file resumed after a default changed
    raises ResultsMismatchError naming the method and option. The library version is deliberately *not* part of
    the configuration: it is recorded with every row as provenance (``library_version``, with the git commit of
    a development checkout, see :func:`gradscorecam.version.library_version`), because every commit would
    otherwise refuse to resume; what a commit changes in a method shows up in its options.
    """
    return {
        "model": spec.name,
        "weights": spec.weights,
        "target_layer": target_layer,
        "target_class": target_class,
        "score": score,
        "masking": masking,
        "top_percent": float(top_percent) if top_percent is not None else "off",
        "seed": int(seed),
        "deletion_steps": int(deletion_steps or 0),
    }


# ------------------------------------------------------------------------------------------- one row
def _evaluate_one(
    explainer: BaseCAM | UnsupportedModelError,
    name: str,
    spec: ModelSpec,
    images: torch.Tensor,
    target: int,
    label: int,
    boxes: tuple | None,
    device: str | torch.device,
    batch_size: int,
    score: str,
    masking: str,
    top_percent: float | None,
    deletion_steps: int | None,
) -> dict[str, Any]:
    empty: dict[str, Any] = dict.fromkeys(METRIC_COLUMNS, math.nan)
    start = time.perf_counter()
    try:
        if isinstance(explainer, UnsupportedModelError):
            raise explainer
        saliency = explainer(images, targets=[target])
    except UnsupportedModelError as error:
        return {**empty, "note": " ".join(f"not defined for this model: {error}".split())}
    synchronize(device)
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    Y, O = explanation_scores(
        spec.model, images, saliency, [target], score=score, masking=masking,  # type: ignore[arg-type]
        mean=spec.mean, std=spec.std, top_percent=top_percent, batch_size=batch_size,
    )  # fmt: skip
    row = {**empty, "Y": float(Y[0]), "O": float(O[0]), "drop": float(drop_percent(Y, O)[0]),
           "increase": float(increase_percent(Y, O)[0])}  # fmt: skip
    # An all-zero map ranks no pixel above another and has no maximum: deletion/insertion would follow raster
    # order and the pointing game the top-left pixel, so those stay NaN (the note says why). Y, O and the drop
    # are defined (E = X * 0, a blank explanation) and kept, as the papers average over all N images.
    degenerate = not float(saliency.amax()) > 0
    if deletion_steps and not degenerate:
        row["deletion_auc"] = float(
            deletion_auc(spec.model, images, saliency, [target], steps=deletion_steps, batch_size=batch_size)[0]
        )
        row["insertion_auc"] = float(
            insertion_auc(spec.model, images, saliency, [target], steps=deletion_steps, batch_size=batch_size)[0]
        )
    if boxes and not degenerate:
        row["pointing_hit"] = float(pointing_game(saliency, [boxes])[0])
        row["energy_pointing"] = float(energy_pointing_game(saliency, [boxes])[0])
    several = boxes is not None and len(boxes) >= 2
    if boxes is not None and several and target == label:
        # unlike the pointing games, an all-zero map gets a score: it finds no object (and has no energy, NaN)
        objects = object_scores(saliency, boxes)
        row["objects_found"] = objects.objects_found
        row["min_object_energy"] = objects.min_object_energy
    synchronize(device)
    row["seconds"] = seconds
    row["metric_seconds"] = time.perf_counter() - start
    notes = [DEGENERATE_NOTE] if degenerate else []
    if boxes is None:
        notes.append("boxes not mapped: the model's transform is not a resize + centre crop")
    if several and target != label:
        notes.append(
            "per-object scores not computed: the explained class is not the labelled one, whose boxes these are"
        )
    if not Y[0] > 0:
        notes.append("Y <= 0: drop undefined")
    row["note"] = "; ".join(notes)
    return row


def _warm_up(
    explainers: Iterable[BaseCAM | UnsupportedModelError],
    spec: ModelSpec,
    record: ImageRecord,
    device: torch.device | str,
) -> None:
    """One untimed call of each explainer: on CUDA the first calls pay for context set-up and cuDNN
    autotuning (seconds), which would otherwise land in the first image's ``seconds``."""
    images = load_batch([record], spec.transform)[0].to(device)
    for explainer in explainers:
        if not isinstance(explainer, UnsupportedModelError):
            explainer(images)
    synchronize(device)


def _build_explainer(
    name: str, model: torch.nn.Module, layer: str, batch_size: int, given: Mapping[str, Any]
) -> BaseCAM | UnsupportedModelError:
    """The explainer from the one factory (``batch_size`` where the method takes it, ``given`` on top), or the
    reason it is not defined for the model (each of its rows then records it)."""
    try:
        return make_explainer(name, model, layer, batch_size=batch_size, overrides={name: given})
    except UnsupportedModelError as error:
        return error


#: Options that change how the work is chunked, laid out in memory or reported, not what is computed (the maps
#: agree to float32 rounding, tests/test_speed.py): left out of the recorded configuration, so that resuming
#: with another batch size or on another device is allowed. ``fuse_batchnorm`` and ``autocast`` stay recorded:
#: folding changes the rounding, autocast the precision.
NOT_RECORDED = ("batch_size", "progress", "channels_last", "cudnn_benchmark")


def _recorded_options(explainer: BaseCAM | UnsupportedModelError, given: Mapping[str, Any]) -> dict[str, Any]:
    options = given if isinstance(explainer, UnsupportedModelError) else explainer.options()
    return {key: value for key, value in options.items() if key not in NOT_RECORDED}


def _method_names(methods: Sequence[str] | str) -> list[str]:
    names = list(METHODS) if methods == "all" else [methods] if isinstance(methods, str) else list(methods)
    unknown = [m for m in names if m not in METHODS]
    if unknown or not names:
        raise ValueError(f"unknown method(s) {unknown}; choose from {list(METHODS)} or 'all'")
    if len(set(names)) != len(names):
        raise ValueError(f"methods listed twice: {names}")
    return names


def _progress_bar(total: int, initial: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="img", desc="images", disable=not enabled, dynamic_ncols=True)
