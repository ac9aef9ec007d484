"""Measuring generated images against real ones: a label classifier, distribution distances, grids."""

from synthmed.evaluate.classifier import LabelClassifier, fit_on_dataset
from synthmed.evaluate.conditioning import (AssignmentResult, LabelRate, assignment_test,
                                            calibrate_threshold,
                                            contrast_test, label_rate)
from synthmed.evaluate.fidelity import (fidelity_report, frechet_distance, gaussian_frechet,
                                        histogram_w1, pixel_distances, real_vs_real)
from synthmed.viz import middle_slices, save_grid, tile
from synthmed.evaluate.runner import evaluate_generator

__all__ = [
    "LabelClassifier", "fit_on_dataset", "LabelRate", "AssignmentResult",
    "assignment_test", "calibrate_threshold", "contrast_test", "label_rate", "fidelity_report", "frechet_distance",
    "gaussian_frechet", "histogram_w1", "pixel_distances", "real_vs_real", "middle_slices",
    "save_grid", "tile", "evaluate_generator",
]
