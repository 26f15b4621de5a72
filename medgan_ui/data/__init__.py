"""Data layer: readers, the ImageSet every other layer consumes, splits, sampling, the demo phantom."""
from medgan_ui.data.imageset import ImageSet, concat
from medgan_ui.data.load import load_dataset
from medgan_ui.data.readers.base import ReadOptions, Report

__all__ = ["ImageSet", "concat", "load_dataset", "ReadOptions", "Report"]
