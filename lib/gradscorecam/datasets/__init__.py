"""Image sources for the evaluation: ImageNet validation folders, labels CSVs and bundled photographs.

Every source returns a list of :class:`ImageRecord` (id, path, class index, boxes in original pixels);
:func:`load_rgb` reads one as RGB, :func:`map_boxes` carries its boxes through a model's transform and
:func:`sample` picks a reproducible random subset.
"""

from .boxes import Box, map_boxes
from .builtin import BUILTIN_PHOTOS, builtin_images, two_cats_composite
from .imagenet import imagenet_folder, imagenet_wnids, read_devkit_ground_truth, read_loc_solution, wnid_to_index
from .labels_csv import labels_csv
from .records import IMAGE_EXTENSIONS, ImageRecord, check_class_indices, load_batch, load_rgb
from .sampling import read_image_list, sample, write_image_list

__all__ = [
    "BUILTIN_PHOTOS",
    "Box",
    "IMAGE_EXTENSIONS",
    "ImageRecord",
    "builtin_images",
    "check_class_indices",
    "imagenet_folder",
    "imagenet_wnids",
    "labels_csv",
    "load_batch",
    "load_rgb",
    "map_boxes",
    "read_devkit_ground_truth",
    "read_image_list",
    "read_loc_solution",
    "sample",
    "two_cats_composite",
    "wnid_to_index",
    "write_image_list",
]
