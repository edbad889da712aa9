"""Folder and file names of the official IDRiD download, shared by the importer and the synthesiser.

One place for these strings, so that ``patchscreen synth`` writes exactly what the importer reads
from a real download (see docs/data.md for the tree).
"""

from __future__ import annotations

SEGMENTATION = "A. Segmentation"
SEG_IMAGES = f"{SEGMENTATION}/1. Original Images"
SEG_MASKS = f"{SEGMENTATION}/2. All Segmentation Groundtruths"
GRADING = "B. Disease Grading"
GRADING_IMAGES = f"{GRADING}/1. Original Images"
GRADING_LABELS = f"{GRADING}/2. Groundtruths"

SPLITS = {"train": "a. Training Set", "test": "b. Testing Set"}
GRADING_LABEL_FILES = {
    "train": "a. IDRiD_Disease Grading_Training Labels.csv",
    "test": "b. IDRiD_Disease Grading_Testing Labels.csv",
}
MASK_FOLDERS = {
    "MA": "1. Microaneurysms",
    "HE": "2. Haemorrhages",
    "EX": "3. Hard Exudates",
    "SE": "4. Soft Exudates",
    "OD": "5. Optic Disc",
}
LESION_TYPES = ("MA", "HE", "EX", "SE")  # the union of these makes a patch diseased; OD is anatomy
SYNTHETIC_MARKER = "synthetic.json"
