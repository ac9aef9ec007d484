"""Measuring generated images against real ones: a label classifier, distribution distances, grids."""

from synthmed.evaluate.classifier import LabelClassifier, fit_on_dataset
from synthmed.evaluate.conditioning import (AssignmentResult, LabelRate, assignment_test,
                                            calibrate_threshold,
                                            contrast_test, label_rate)
from synthmed.evaluate.fidelity import (fidelity_report, frechet_distance, gaussian_frechet,
                                        histogram_w1, pixel_distances, real_vs_real)
from synthmed.evaluate.cohort_metrics import FidelityDiversity, MetricReadout, fidelity_diversity
from synthmed.evaluate.diversity import Diversity, diversity, ms_ssim_settings, pairwise_ms_ssim
from synthmed.evaluate.floor import Floor, Interval, real_floor
from synthmed.evaluate.groups import GroupResult, group_masks, per_group
from synthmed.evaluate.prdc import PRDC, knn_radii, prdc
from synthmed.evaluate.slices import plane_slices, slicewise_diversity, slicewise_features
from synthmed.viz import middle_slices, save_grid, tile
from synthmed.evaluate.runner import evaluate_generator

__all__ = [
    "LabelClassifier", "fit_on_dataset", "LabelRate", "AssignmentResult",
    "assignment_test", "calibrate_threshold", "contrast_test", "label_rate", "fidelity_report", "frechet_distance",
    "gaussian_frechet", "histogram_w1", "pixel_distances", "real_vs_real", "middle_slices",
    "save_grid", "tile", "evaluate_generator",
    "FidelityDiversity", "MetricReadout", "fidelity_diversity", "Diversity", "diversity",
    "ms_ssim_settings", "pairwise_ms_ssim", "Floor", "Interval", "real_floor", "GroupResult",
    "group_masks", "per_group", "PRDC", "knn_radii", "prdc", "plane_slices", "slicewise_diversity",
    "slicewise_features",
]
