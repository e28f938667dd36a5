"""Image sources on small fixtures of each ImageNet layout and a labels CSV, made in tmp_path."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.models import ResNet50_Weights

from gradscorecam.datasets import (
    BUILTIN_PHOTOS,
    ImageRecord,
    builtin_images,
    imagenet_folder,
    imagenet_wnids,
    labels_csv,
    load_rgb,
    map_boxes,
    read_image_list,
    sample,
    write_image_list,
)
from gradscorecam.errors import DataSourceError

TENCH, GOLDFISH, TOILET_TISSUE = "n01440764", "n01443537", "n15075141"  # classes 0, 1, 999


def _image(path: Path, size: tuple[int, int] = (12, 8), mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    values = np.random.default_rng(len(str(path))).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    image = Image.fromarray(values)
    image = image.convert(mode) if mode != "RGB" else image
    image.save(path, format="JPEG" if path.suffix.upper() == ".JPEG" or mode == "CMYK" else None)
    return path


def _val_name(i: int) -> str:
    return f"ILSVRC2012_val_{i:08d}"


# -------------------------------------------------------------------------------------------- wnids
def test_wnids_are_torchvision_order():
    wnids = imagenet_wnids()
    assert len(wnids) == 1000 and len(set(wnids)) == 1000
    assert list(wnids) == sorted(wnids)  # torchvision's class index = position in the sorted ids
    categories = ResNet50_Weights.IMAGENET1K_V1.meta["categories"]
    # pairs checked by hand against WordNet
    for wnid, name in [(TENCH, "tench"), (GOLDFISH, "goldfish"), ("n02123045", "tabby"), ("n02124075", "Egyptian cat"),
                       ("n07920052", "espresso"), ("n03763968", "military uniform"), (TOILET_TISSUE, "toilet tissue")]:  # fmt: skip
        assert categories[wnids.index(wnid)] == name


# -------------------------------------------------------------------------------------------- flat
def _loc_csv(path: Path, rows: dict[str, str]) -> Path:
    lines = ["ImageId,PredictionString"] + [f"{k},{v}" for k, v in rows.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def flat(tmp_path: Path) -> Path:
    root = tmp_path / "val"
    for i in (1, 2, 3):
        _image(root / f"{_val_name(i)}.JPEG")
    return root


def test_flat_folder_with_loc_solution_found_above(flat: Path):
    _loc_csv(flat.parent / "LOC_val_solution.csv", {
        _val_name(1): f"{TOILET_TISSUE} 1 2 5 6 {TOILET_TISSUE} 0 0 3 3 ",
        _val_name(2): f"{TENCH} 0 0 10 7",
        _val_name(3): f"{GOLDFISH} 2 1 4 4",
    })  # fmt: skip
    records = imagenet_folder(flat)
    assert [(r.image_id, r.class_index, r.boxes) for r in records] == [
        (_val_name(1), 999, ((1, 2, 5, 6), (0, 0, 3, 3))),
        (_val_name(2), 0, ((0, 0, 10, 7),)),
        (_val_name(3), 1, ((2, 1, 4, 4),)),
    ]
    assert records[0].path == flat / f"{_val_name(1)}.JPEG"


def test_flat_folder_with_devkit_ground_truth_uses_meta_mat(flat: Path, tmp_path: Path):
    from scipy.io import savemat

    data = tmp_path / "devkit" / "data"
    data.mkdir(parents=True)
    # devkit ILSVRC2012_IDs are not torchvision indices: 490 is tench (0), 361 toilet tissue (999), 171 goldfish (1)
    fields = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "wordnet_height", "num_train_images"]
    synsets = np.array(
        [(490, TENCH, "tench", "", 0, 0, 1300), (361, TOILET_TISSUE, "toilet tissue", "", 0, 0, 1300),
         (171, GOLDFISH, "goldfish", "", 0, 0, 1300), (1001, "n00001740", "entity", "", 5, 19, 0)],
        dtype=[(f, object) for f in fields],
    )  # fmt: skip
    savemat(data / "meta.mat", {"synsets": synsets})
    truth = data / "ILSVRC2012_validation_ground_truth.txt"
    truth.write_text("361\n490\n171\n")
    records = imagenet_folder(flat, labels=truth)
    assert [r.class_index for r in records] == [999, 0, 1]
    (data / "meta.mat").unlink()
    with pytest.raises(DataSourceError, match="meta.mat"):
        imagenet_folder(flat, labels=truth)


def test_flat_folder_with_xml_annotations(flat: Path, tmp_path: Path):
    annotations = tmp_path / "Annotations"
    annotations.mkdir()
    for i, wnid in [(1, TENCH), (2, GOLDFISH), (3, TENCH)]:
        (annotations / f"{_val_name(i)}.xml").write_text(
            f"<annotation><filename>{_val_name(i)}</filename><object><name>{wnid}</name><bndbox><xmin>1</xmin>"
            f"<ymin>2</ymin><xmax>{3 + i}</xmax><ymax>5</ymax></bndbox></object></annotation>"
        )
    records = imagenet_folder(flat, annotations=annotations)
    assert [(r.class_index, r.boxes) for r in records] == [
        (0, ((1, 2, 4, 5),)),
        (1, ((1, 2, 5, 5),)),
        (0, ((1, 2, 6, 5),)),
    ]


def test_flat_folder_errors_name_the_file(flat: Path, tmp_path: Path):
    with pytest.raises(DataSourceError, match="no labels"):
        imagenet_folder(flat)
    wrong = _loc_csv(tmp_path / "wrong.csv", {_val_name(1): "n99999999 0 0 1 1", _val_name(2): f"{TENCH} 0 0 1 1",
                                              _val_name(3): f"{TENCH} 0 0 1 1"})  # fmt: skip
    with pytest.raises(DataSourceError, match=r"wrong\.csv, line 2.*n99999999"):
        imagenet_folder(flat, labels=wrong)
    missing = _loc_csv(tmp_path / "missing.csv", {_val_name(i): f"{TENCH} 0 0 1 1" for i in (1, 2, 3, 4)})
    with pytest.raises(DataSourceError, match=f"{_val_name(4)}.*image file not found"):
        imagenet_folder(flat, labels=missing)
    assert len(imagenet_folder(flat, labels=missing, allow_missing=True)) == 3  # a copied subset of val
    unlabelled = _loc_csv(tmp_path / "partial.csv", {_val_name(i): f"{TENCH} 0 0 1 1" for i in (1, 2)})
    with pytest.raises(DataSourceError, match=f"{_val_name(3)}.JPEG: no label"):
        imagenet_folder(flat, labels=unlabelled)


# ----------------------------------------------------------------------------------------- class folders
def test_class_folders_with_loc_boxes(tmp_path: Path):
    root = tmp_path / "val"
    _image(root / TOILET_TISSUE / f"{_val_name(7)}.JPEG")
    _image(root / TENCH / f"{_val_name(8)}.JPEG")
    _image(root / TENCH / f"{_val_name(9)}.png")
    records = imagenet_folder(root)
    assert [(r.image_id, r.class_index, r.boxes) for r in records] == [
        (_val_name(7), 999, ()), (_val_name(8), 0, ()), (_val_name(9), 0, ())
    ]  # fmt: skip
    loc = _loc_csv(tmp_path / "LOC_val_solution.csv", {_val_name(7): f"{TOILET_TISSUE} 1 1 2 2",
                                                       _val_name(8): f"{TENCH} 3 3 4 4"})  # fmt: skip
    assert [r.boxes for r in imagenet_folder(root, labels=loc)] == [((1, 1, 2, 2),), ((3, 3, 4, 4),), ()]


def test_class_folders_errors(tmp_path: Path):
    root = tmp_path / "val"
    _image(root / "n99999999" / "a.JPEG")
    with pytest.raises(DataSourceError, match="n99999999"):
        imagenet_folder(root)
    other = tmp_path / "other"
    _image(other / TENCH / f"{_val_name(1)}.JPEG")
    loc = _loc_csv(tmp_path / "disagree.csv", {_val_name(1): f"{GOLDFISH} 0 0 1 1"})
    with pytest.raises(DataSourceError, match="the folder says"):
        imagenet_folder(other, labels=loc)


# ------------------------------------------------------------------------------------------- labels CSV
def test_labels_csv_with_wnid_and_boxes(tmp_path: Path):
    _image(tmp_path / "images" / "a.jpg")
    _image(tmp_path / "images" / "b.png")
    (tmp_path / "labels.csv").write_text(
        "file,class_index,wnid,class_name,x0,y0,x1,y1\n"
        f"images/a.jpg,1,{GOLDFISH},goldfish,0,0,3,3\n"
        f"images/a.jpg,1,{GOLDFISH},goldfish,5,5,9,7\n"
        f"images/b.png,999,{TOILET_TISSUE},toilet tissue,,,,\n"
    )
    records = labels_csv(tmp_path / "labels.csv")
    assert records == [
        ImageRecord("images/a.jpg", tmp_path / "images" / "a.jpg", 1, ((0, 0, 3, 3), (5, 5, 9, 7))),
        ImageRecord("images/b.png", tmp_path / "images" / "b.png", 999, ()),
    ]


def test_labels_csv_errors_name_file_and_line(tmp_path: Path):
    _image(tmp_path / "a.jpg")
    bad = tmp_path / "bad.csv"
    bad.write_text(f"file,class_index,wnid\na.jpg,0,{GOLDFISH}\n")
    with pytest.raises(DataSourceError, match=r"bad\.csv, line 2.*n01443537 is ImageNet class 1"):
        labels_csv(bad)
    bad.write_text("file,class_index,wnid\na.jpg,0,n99999999\n")
    with pytest.raises(DataSourceError, match=r"bad\.csv, line 2.*n99999999"):
        labels_csv(bad)
    bad.write_text("file,class_index\na.jpg,0\nmissing.jpg,3\n")
    with pytest.raises(DataSourceError, match=r"line 3: image file not found: .*missing\.jpg"):
        labels_csv(bad)
    bad.write_text("file,label\na.jpg,0\n")
    with pytest.raises(DataSourceError, match="missing column"):
        labels_csv(bad)
    bad.write_text("file,class_index\na.jpg,zero\n")
    with pytest.raises(DataSourceError, match="not an integer"):
        labels_csv(bad)


# ---------------------------------------------------------------------------------------------- load_rgb
def test_load_rgb_converts_grayscale_and_cmyk(tmp_path: Path):
    for mode in ("L", "CMYK", "RGBA"):
        path = _image(tmp_path / f"{mode}.{'png' if mode == 'RGBA' else 'jpg'}", mode=mode)
        image = load_rgb(path)
        assert image.mode == "RGB" and image.size == (12, 8)


def test_unreadable_truncated_and_bomb_images_name_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    garbage = tmp_path / "garbage.JPEG"
    garbage.write_bytes(b"not an image at all")
    with pytest.raises(DataSourceError, match="garbage.JPEG"):
        load_rgb(garbage)
    good = _image(tmp_path / "good.jpg", size=(64, 64))
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[:300])
    with pytest.raises(DataSourceError, match="truncated.jpg"):
        load_rgb(truncated)
    with pytest.raises(DataSourceError, match="not found: .*nothere.jpg"):
        load_rgb(tmp_path / "nothere.jpg")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 64 x 64 = 4096 pixels is a "bomb" now
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DataSourceError, match="good.jpg.*decompression bomb"):
            load_rgb(good)


# ------------------------------------------------------------------------------------------------- boxes
def test_boxes_through_resize_and_centre_crop_by_hand():
    transform = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize([0.5] * 3, [0.5] * 3)])
    # 500 x 375 -> 341 x 256 (scale 0.682, 0.6827), crop offsets left round(117 / 2) = 58, top 16
    assert map_boxes([(0, 0, 499, 374)], (500, 375), transform) == ((0, 0, 223, 223),)
    # x: 100 * 0.682 = 68.2 -> 10.2, (299 + 1) * 0.682 = 204.6 -> 146.6; y: 150 * 0.68267 = 102.4 -> 86.4, 250 * ... -> 154.7
    assert map_boxes([(100, 150, 299, 249)], (500, 375), transform) == ((10, 86, 146, 154),)
    assert map_boxes([(0, 0, 20, 20)], (500, 375), transform) == ()  # cropped away
    preset = ResNet50_Weights.IMAGENET1K_V2.transforms()  # Resize(232) + CenterCrop(224)
    assert map_boxes([(0, 0, 231, 231)], (232, 232), preset) == ((0, 0, 223, 223),)
    assert map_boxes([(0, 0, 5, 5)], (100, 100), lambda image: image) is None
    assert map_boxes([(0, 0, 5, 5)], (100, 100), T.Compose([T.RandomCrop(10)])) is None


# ----------------------------------------------------------------------------------------------- builtin
def test_builtin_images_and_two_cats_composite(tmp_path: Path):
    records = builtin_images(cache_dir=tmp_path)
    assert [r.image_id for r in records] == [p.image_id for p in BUILTIN_PHOTOS] + ["two_cats"]
    assert {r.image_id: r.class_index for r in records}["coffee"] == 967
    for record in records:
        assert load_rgb(record.path).mode == "RGB"
    cats = records[-1]
    assert cats.class_index == 281 and cats.boxes == ((40, 56, 255, 199), (256, 312, 471, 455))
    pixels = np.asarray(load_rgb(cats.path)).astype(int)
    assert pixels.shape == (512, 512, 3)
    assert (pixels[10, 10] == [124, 116, 104]).all() and (pixels[250, 100] == [124, 116, 104]).all()
    # the two pasted copies are identical, and differ from the background
    assert (pixels[56:200, 40:256] == pixels[312:456, 256:472]).all()
    assert np.abs(pixels[56:200, 40:256] - np.array([124, 116, 104])).mean() > 10
    assert builtin_images(cache_dir=tmp_path)[-1].path.stat().st_mtime == cats.path.stat().st_mtime  # written once


# ---------------------------------------------------------------------------------------------- sampling
def test_sample_is_reproducible_nested_and_writes_ids(tmp_path: Path):
    records = [ImageRecord(f"img{i}", Path(f"{i}.jpg"), i % 7) for i in range(100)]
    a, b = sample(records, 10, seed=3), sample(records, 10, seed=3)
    assert a == b and len(a) == 10 and len({r.image_id for r in a}) == 10
    assert a != sample(records, 10, seed=4)
    assert set(r.image_id for r in a) <= set(r.image_id for r in sample(records, 30, seed=3))
    assert [records.index(r) for r in a] == sorted(records.index(r) for r in a)  # source order
    assert sample(records, None) == records and sample(records, 500) == records
    # pinned: the choice must not change between versions (it depends only on sha256 of seed and id)
    assert [r.image_id for r in sample(records, 3, seed=0)] == EXPECTED_SAMPLE
    path = write_image_list(a, tmp_path / "chosen.csv")
    assert read_image_list(path) == [r.image_id for r in a]


# the three smallest sha256("0:img<i>") among img0..img99, in source order (checked with hashlib by hand)
EXPECTED_SAMPLE = ["img6", "img9", "img28"]


def test_load_batch_maps_boxes(tmp_path: Path):
    from gradscorecam.datasets import load_batch

    path = _image(tmp_path / "x.png", size=(40, 20))
    transform = T.Compose([T.Resize(10), T.CenterCrop(10), T.ToTensor()])
    images, boxes = load_batch([ImageRecord("x", path, 0, ((10, 0, 19, 19),))], transform)
    # 40 x 20 -> 20 x 10 (scale 0.5), crop left 5: x 5..10 -> 0..4
    assert images.shape == (1, 3, 10, 10) and images.dtype == torch.float32
    assert boxes == [((0, 0, 4, 9),)]
