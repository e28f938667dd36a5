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
class, as ImageNet gives them, also when the predicted class is explained), ``seconds`` (the explanation) and
``metric_seconds``, a ``note`` (why a row has no values, e.g. CAM on VGG16), and the configuration
(:data:`CONFIG_KEYS`) together with ``torch_version`` and ``device``.

**Crash-safe and resumable.** Every row is appended and flushed as soon as it is computed. Rerunning the
same call reads the file, drops a torn last line left by a crash, and skips the (image, method) pairs
already there, so a run killed at any point and restarted ends with exactly the rows of an uninterrupted
run. The configuration is kept in the rows and in a sidecar ``<out>.config.json``; a call with another
configuration raises :class:`~gradscorecam.errors.ResultsMismatchError` naming the keys that differ,
instead of mixing results (pass another ``out_path``, or ``overwrite=True`` to discard the file). A
``.parquet`` ``out_path`` is journaled to ``<out>.journal.csv`` while running and written at the end.

An image that cannot be read stops the run with a DataSourceError naming the file; the rows before it
are kept, so fix or drop the image and rerun.

**Shards** (SLURM job arrays): ``shard_index=i, num_shards=n`` evaluates records ``i, i+n, i+2n, ...``;
give every shard its own ``out_path`` and combine them with :func:`merge_results`.
"""

from __future__ import annotations

import csv
import inspect
import io
import json
import math
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import torch

from .comparison import synchronize
from .datasets.records import ImageRecord, check_class_indices, load_batch
from .datasets.sampling import write_image_list
from .errors import ResultsMismatchError, UnsupportedModelError
from .explainers import METHODS, BaseCAM
from .metrics.deletion import deletion_auc, insertion_auc
from .metrics.faithfulness import MASKINGS, SCORES, drop_percent, explanation_scores, increase_percent
from .metrics.localization import energy_pointing_game, pointing_game
from .models import ModelSpec

TargetChoice = Literal["predicted", "label"]

#: The keys that define an evaluation; rows of different configurations never share a file.
CONFIG_KEYS = (
    "model",
    "weights",
    "target_layer",
    "target_class",
    "score",
    "masking",
    "top_percent",
    "seed",
    "deletion_steps",
    "explainer_options",
    "library_version",
)
#: Recorded with every row but allowed to differ between the parts of one run (a resumed run may move).
ENVIRONMENT_KEYS = ("torch_version", "device")
RESULT_COLUMNS = (
    "image_id",
    "label",
    "class_index",
    "predicted",
    "method",
    "Y",
    "O",
    "drop",
    "increase",
    "deletion_auc",
    "insertion_auc",
    "pointing_hit",
    "energy_pointing",
    "seconds",
    "metric_seconds",
    "note",
)
COLUMNS = RESULT_COLUMNS + CONFIG_KEYS + ENVIRONMENT_KEYS


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
            ``{"Grad++ScoreCAM": {"max_channels": 64}}``); recorded in the configuration.
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
    options = {name: dict(explainer_options.get(name, {})) for name in names} if explainer_options else {}
    unknown = set(explainer_options or {}) - set(names)
    if unknown:
        raise ValueError(f"explainer_options for methods not evaluated: {sorted(unknown)}")
    check_class_indices(records, len(spec.categories))  # labels of another data set fail here, naming the line
    layer = target_layer or spec.target_layer
    config = make_config(spec, layer, target_class, score, masking, top_percent, seed, deletion_steps, options)
    environment = {"torch_version": torch.__version__, "device": str(device)}
    if spec.is_random:
        warnings.warn(f"{spec.name} has random weights ({spec.weights}); every row records it.", stacklevel=2)

    store = ResultsStore(Path(out_path), config, overwrite=overwrite)
    shard = list(records)[shard_index::num_shards]
    write_image_list(shard, store.images_path)
    done = store.done_pairs()
    todo = [r for r in shard if any((r.image_id, m) not in done for m in names)]

    model = spec.model.to(device).eval()
    explainers = {name: _make_explainer(name, model, layer, batch_size, options.get(name, {})) for name in names}
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
                row = _evaluate_one(
                    explainers[name], name, spec, images, target, boxes[0], device, batch_size, score, masking,
                    top_percent, deletion_steps,
                )
                store.append({"image_id": record.image_id, "label": record.class_index, "class_index": target,
                              "predicted": predicted, "method": name, **row, **config, **environment})  # fmt: skip
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
    explainer_options: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    """The configuration recorded with every row (:data:`CONFIG_KEYS`), with values as the CSV gives them back."""
    from . import __version__

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
        "explainer_options": json.dumps(explainer_options, sort_keys=True, default=str),
        "library_version": __version__,
    }


def merge_results(paths: Sequence[str | Path]) -> pd.DataFrame:
    """Concatenate results files (e.g. the shards of one run); refuses mixed configurations and duplicate rows."""
    frames = [read_results(p) for p in paths]
    if not frames:
        raise ValueError("no results files given")
    merged = pd.concat(frames, ignore_index=True)
    check_single_config(merged, what=", ".join(map(str, paths)))
    duplicated = merged.duplicated(["image_id", "method"])
    if duplicated.any():
        first = merged.loc[duplicated, ["image_id", "method"]].iloc[0].tolist()
        raise ResultsMismatchError(f"the files share (image, method) rows, e.g. {first}: were the shards disjoint?")
    return merged


def read_results(path: str | Path) -> pd.DataFrame:
    """Read a results file (CSV or Parquet, plus a Parquet run's unfinished journal) with the runner's dtypes."""
    path = Path(path)
    frames = []
    if path.suffix == ".parquet":
        if path.is_file():
            frames.append(pd.read_parquet(path))
        journal = _journal_path(path)
        if journal.is_file():
            frames.append(_read_csv(journal))
    elif path.is_file():
        frames.append(_read_csv(path))
    if not frames:
        return pd.DataFrame(columns=list(COLUMNS))
    return _typed(pd.concat(frames, ignore_index=True))


def check_single_config(df: pd.DataFrame, what: str = "the results") -> None:
    """Raise ResultsMismatchError if ``df`` holds rows of more than one configuration (naming the keys)."""
    present = [k for k in CONFIG_KEYS if k in df.columns]
    configs = df[present].astype(str).drop_duplicates()
    if len(configs) > 1:
        differing = [k for k in present if configs[k].nunique() > 1]
        raise ResultsMismatchError(
            f"{what} mix {len(configs)} configurations, differing in {', '.join(differing)}; "
            "summarise or merge each configuration separately."
        )


# ------------------------------------------------------------------------------------------- one row
def _evaluate_one(
    explainer: BaseCAM | None,
    name: str,
    spec: ModelSpec,
    images: torch.Tensor,
    target: int,
    boxes: tuple | None,
    device: str | torch.device,
    batch_size: int,
    score: str,
    masking: str,
    top_percent: float | None,
    deletion_steps: int | None,
) -> dict[str, Any]:
    empty = {k: math.nan for k in RESULT_COLUMNS[5:15]}
    start = time.perf_counter()
    try:
        if explainer is None:
            raise UnsupportedModelError(f"{name} could not be built for {spec.name}")
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
    if deletion_steps:
        row["deletion_auc"] = float(deletion_auc(spec.model, images, saliency, [target], steps=deletion_steps, batch_size=batch_size)[0])
        row["insertion_auc"] = float(insertion_auc(spec.model, images, saliency, [target], steps=deletion_steps, batch_size=batch_size)[0])
    if boxes:
        row["pointing_hit"] = float(pointing_game(saliency, [boxes])[0])
        row["energy_pointing"] = float(energy_pointing_game(saliency, [boxes])[0])
    synchronize(device)
    row["seconds"] = seconds
    row["metric_seconds"] = time.perf_counter() - start
    notes = []
    if boxes is None:
        notes.append("boxes not mapped: the model's transform is not a resize + centre crop")
    if not Y[0] > 0:
        notes.append("Y <= 0: drop undefined")
    row["note"] = "; ".join(notes)
    return row


def _warm_up(explainers: Iterable[BaseCAM | None], spec: ModelSpec, record: ImageRecord, device: torch.device | str) -> None:
    """One untimed call of each explainer: on CUDA the first calls pay for context set-up and cuDNN
    autotuning (seconds), which would otherwise land in the first image's ``seconds``."""
    images = load_batch([record], spec.transform)[0].to(device)
    for explainer in explainers:
        if explainer is not None:
            explainer(images)
    synchronize(device)


def _make_explainer(name: str, model: torch.nn.Module, layer: str, batch_size: int, options: Mapping[str, Any]) -> BaseCAM | None:
    cls = METHODS[name]
    kwargs = dict(options)
    if "batch_size" in inspect.signature(cls.__init__).parameters:
        kwargs.setdefault("batch_size", batch_size)
    try:
        return cls(model, layer, **kwargs)
    except UnsupportedModelError:
        return None  # each of its rows then records why


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


# ----------------------------------------------------------------------------------------- the store
class ResultsStore:
    """The results file of one configuration: checks it, lists done pairs, appends rows durably."""

    def __init__(self, path: Path, config: Mapping[str, Any], *, overwrite: bool = False) -> None:
        if path.suffix not in (".csv", ".parquet"):
            raise ValueError(f"out_path must end in .csv or .parquet, got {path}")
        self.path = path
        self.config = dict(config)
        self.sidecar = path.with_name(path.name + ".config.json")
        self.images_path = path.with_name(path.stem + ".images.csv")
        self.journal = _journal_path(path) if path.suffix == ".parquet" else path
        path.parent.mkdir(parents=True, exist_ok=True)
        if overwrite:
            for file in (path, self.journal, self.sidecar):
                file.unlink(missing_ok=True)
        self._check_config()
        _drop_torn_line(self.journal)
        self.sidecar.write_text(json.dumps(self.config, indent=2, sort_keys=True) + "\n")

    def _check_config(self) -> None:
        stored: dict[str, Any] | None = None
        if self.sidecar.is_file():
            stored = json.loads(self.sidecar.read_text())
        else:
            existing = read_results(self.path)
            if len(existing):
                stored = existing.iloc[0][list(CONFIG_KEYS)].to_dict()
        if stored is None:
            return
        differing = [k for k in CONFIG_KEYS if str(stored.get(k, "")) != str(self.config[k])]
        if differing:
            details = "; ".join(f"{k}: stored {stored.get(k)!r}, now {self.config[k]!r}" for k in differing)
            raise ResultsMismatchError(
                f"{self.path} holds results of another configuration ({details}). Use another out_path, or pass "
                "overwrite=True to discard the existing results."
            )

    def done_pairs(self) -> set[tuple[str, str]]:
        """The (image_id, method) pairs already in the file."""
        df = read_results(self.path)
        return set(zip(df["image_id"].astype(str), df["method"].astype(str)))

    def append(self, row: Mapping[str, Any]) -> None:
        """Append one row and flush it to disk, writing the header first if the file is new."""
        new = not self.journal.is_file() or self.journal.stat().st_size == 0
        with self.journal.open("a", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            if new:
                writer.writerow(COLUMNS)
            writer.writerow([_cell(row.get(column, "")) for column in COLUMNS])
            handle.flush()

    def finish(self) -> None:
        """For Parquet: fold the journal into the Parquet file (written whole, then renamed into place)."""
        if self.path.suffix != ".parquet" or not self.journal.is_file():
            return
        df = read_results(self.path)
        partial = self.path.with_name(self.path.name + ".tmp")
        df.to_parquet(partial, index=False)
        partial.replace(self.path)
        self.journal.unlink()

    def read(self) -> pd.DataFrame:
        return read_results(self.path)


def _journal_path(path: Path) -> Path:
    return path.with_name(path.name + ".journal.csv")


def _drop_torn_line(path: Path) -> None:
    """Cut a last line that a crash left without its newline (the rows before it are complete)."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if data.endswith(b"\n"):
        return
    cut = data.rfind(b"\n") + 1
    with path.open("r+b") as handle:
        handle.truncate(cut)


def _cell(value: Any) -> Any:
    if isinstance(value, str):
        return " ".join(value.split())  # one row per line, whatever an error message held
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return value


def _read_csv(path: Path) -> pd.DataFrame:
    # Readers never modify the file (a run may be writing it); a torn last line is skipped in memory.
    data = path.read_bytes()
    data = data[: data.rfind(b"\n") + 1]
    if not data.strip():
        return pd.DataFrame(columns=list(COLUMNS))
    return pd.read_csv(io.BytesIO(data), dtype={"image_id": str, "method": str, "note": str, "weights": str, "model": str,
                                    "explainer_options": str, "library_version": str}, keep_default_na=True)  # fmt: skip


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    if "note" in df.columns:
        df["note"] = df["note"].fillna("").astype(str)
    for column in ("Y", "O", "drop", "increase", "deletion_auc", "insertion_auc", "pointing_hit", "energy_pointing",
                   "seconds", "metric_seconds"):  # fmt: skip
        if column in df.columns:
            df[column] = pd.to_numeric(df[column], errors="coerce").astype(float)
    return df
