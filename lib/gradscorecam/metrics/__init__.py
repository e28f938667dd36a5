"""Evaluation metrics for saliency maps: faithfulness (Average Drop/Increase, Deletion/Insertion) and localisation.

>>> from gradscorecam import metrics
>>> Y, O = metrics.explanation_scores(model, images, saliency, targets)
>>> metrics.average_drop(Y, O), metrics.average_increase(Y, O)     # percent
>>> metrics.pointing_game(saliency, boxes), metrics.energy_pointing_game(saliency, boxes)
>>> metrics.object_scores(saliency[0], boxes[0]).objects_found    # several objects of one class
"""

from .deletion import curve_auc, deletion_auc, insertion_auc, perturbation_curves
from .faithfulness import (
    MASKINGS,
    SCORES,
    average_drop,
    average_increase,
    drop_percent,
    explanation_maps,
    explanation_scores,
    increase_percent,
    keep_top_percent,
    model_scores,
)
from .localization import (
    ObjectScores,
    box_mask,
    default_tolerance,
    energy_pointing_game,
    object_scores,
    objects_reached,
    pointing_game,
)

__all__ = [
    "MASKINGS",
    "ObjectScores",
    "SCORES",
    "average_drop",
    "average_increase",
    "box_mask",
    "curve_auc",
    "default_tolerance",
    "deletion_auc",
    "drop_percent",
    "energy_pointing_game",
    "explanation_maps",
    "explanation_scores",
    "increase_percent",
    "insertion_auc",
    "keep_top_percent",
    "model_scores",
    "object_scores",
    "objects_reached",
    "perturbation_curves",
    "pointing_game",
]
