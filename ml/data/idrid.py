"""Read the method's cohort from the three layouts of IDRiD data this project meets.

- an official IDRiD download ("A. Segmentation", "B. Disease Grading", masks as .tif);
- a synthetic folder written by ``ml.synth.write_dataset`` (the same layout plus ``synthetic.json``);
- the prepared copy in ``../shared/data/idrid`` (``segmentation/`` and ``grading/labels.csv``).

The cohort is the grade-0 images of the grading set (healthy) and the segmentation images (DR).
The two sets are numbered independently, so they are never joined on the image number: each
sample's id names its set. Every file that cannot be used is reported as a ``Problem`` and the
import goes on with the rest. Files are checked from their headers only (size, format), so reading
a cohort is fast; a file that turns out undecodable later is reported by the cache loader.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from PIL import Image

from ml.data import layout
from ml.data.cohort import Cohort, Problem, Sample

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff"}
MASK_SUFFIXES = {".tif", ".tiff", ".png"}
_MASK_NAME = re.compile(r"^(?P<image>.+)_(?P<kind>MA|HE|EX|SE|OD)$", re.IGNORECASE)


def detect(path: Path) -> tuple[str, Path] | None:
    """(kind, root) for a folder holding one of the layouts, looking one level down as well."""
    candidates = (
        [path, path / "idrid", *sorted(p for p in path.iterdir() if p.is_dir())] if path.is_dir() else []
    )
    for root in candidates:
        if (root / "segmentation" / "images").is_dir() and (root / "grading" / "labels.csv").is_file():
            return "prepared", root
        if (root / layout.SEGMENTATION).is_dir() or (root / layout.GRADING).is_dir():
            return ("synthetic" if (root / layout.SYNTHETIC_MARKER).is_file() else "idrid"), root
    return None


def read_any(path: Path) -> Cohort:
    path = path.expanduser().resolve()
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    found = detect(path)
    if found is None:
        raise ValueError(
            f"{path}: not an IDRiD download ('{layout.SEGMENTATION}', '{layout.GRADING}'), a synthetic "
            "folder from `patchscreen synth`, or the prepared layout (segmentation/, grading/labels.csv)"
        )
    kind, root = found
    return read_prepared(root) if kind == "prepared" else read_official(root, kind)


def _image_size(path: Path, problems: list[Problem], what: str) -> tuple[int, int] | None:
    """The pixel size from the header, or None with a problem recorded."""
    try:
        with Image.open(path) as img:
            if img.width < 1 or img.height < 1:
                raise OSError("image has no pixels")
            return img.size
    except Exception as exc:  # noqa: BLE001 - any unreadable file is reported, never fatal
        problems.append(Problem(str(path), f"unreadable {what} ({exc.__class__.__name__}: {exc})"))
        return None


def _dr_sample(
    sample_id: str,
    image: Path,
    masks: dict[str, Path],
    split: str | None,
    problems: list[Problem],
) -> Sample | None:
    """A DR sample if the image and its masks agree; otherwise problems and None (image skipped)."""
    size = _image_size(image, problems, "image")
    if size is None:
        return None
    if not any(kind in masks for kind in layout.LESION_TYPES):
        problems.append(Problem(str(image), "no lesion mask for this segmentation image: skipped"))
        return None
    ok = True
    for kind, path in masks.items():
        mask_size = _image_size(path, problems, f"{kind} mask")
        if mask_size is None:
            ok = False
        elif mask_size != size:
            problems.append(
                Problem(
                    str(path), f"mask is {mask_size[0]}x{mask_size[1]} but its image is {size[0]}x{size[1]}"
                )
            )
            ok = False
    if not ok:
        problems.append(Problem(str(image), "skipped: one of its masks is unusable"))
        return None
    return Sample(id=sample_id, image=image, is_dr=True, masks=dict(masks), grade=None, split=split)


def _healthy_sample(
    sample_id: str, image: Path, grade: int, split: str, problems: list[Problem]
) -> Sample | None:
    if not image.is_file():
        problems.append(
            Problem(str(image), "listed with grade 0 in the labels CSV but the image file is missing")
        )
        return None
    if _image_size(image, problems, "image") is None:
        return None
    return Sample(id=sample_id, image=image, is_dr=False, masks={}, grade=grade, split=split)


def _files(folder: Path, suffixes: set[str]) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes)


def read_official(root: Path, source: str = "idrid") -> Cohort:
    """The official download layout (also what ``patchscreen synth`` writes)."""
    problems: list[Problem] = []
    samples: list[Sample] = []

    if not (root / layout.SEG_IMAGES).is_dir():
        problems.append(Problem(str(root / layout.SEG_IMAGES), "folder missing: no DR images read"))
    for split, split_folder in layout.SPLITS.items():
        images = {p.stem: p for p in _files(root / layout.SEG_IMAGES / split_folder, IMAGE_SUFFIXES)}
        masks: dict[str, dict[str, Path]] = {name: {} for name in images}
        for kind, kind_folder in layout.MASK_FOLDERS.items():
            for path in _files(root / layout.SEG_MASKS / split_folder / kind_folder, MASK_SUFFIXES):
                match = _MASK_NAME.match(path.stem)
                if match is None or match["kind"].upper() != kind:
                    problems.append(
                        Problem(str(path), f"not a {kind} mask name (expected IDRiD_NN_{kind}.tif)")
                    )
                elif match["image"] not in images:
                    problems.append(Problem(str(path), "mask without a matching segmentation image: ignored"))
                else:
                    masks[match["image"]][kind] = path
        for name, image in images.items():
            sample = _dr_sample(f"segmentation/{name}", image, masks[name], split, problems)
            if sample is not None:
                samples.append(sample)

    for split, split_folder in layout.SPLITS.items():
        csv_path = _grading_csv(root, split)
        if csv_path is None:
            problems.append(
                Problem(
                    str(root / layout.GRADING_LABELS / layout.GRADING_LABEL_FILES[split]),
                    "labels CSV missing",
                )
            )
            continue
        folder = root / layout.GRADING_IMAGES / split_folder
        on_disk = {p.stem: p for p in _files(folder, IMAGE_SUFFIXES)}
        listed: set[str] = set()
        for name, grade in _read_grading_csv(csv_path, problems):
            listed.add(name)
            if grade == 0:
                image = on_disk.get(name, folder / f"{name}.jpg")
                sample = _healthy_sample(f"grading/{split}/{name}", image, grade, split, problems)
                if sample is not None:
                    samples.append(sample)
        for name, path in on_disk.items():
            if name not in listed:
                problems.append(Problem(str(path), "grading image not in the labels CSV: ignored"))
    return Cohort(source=source, root=root, samples=samples, skipped=problems)


def _grading_csv(root: Path, split: str) -> Path | None:
    exact = root / layout.GRADING_LABELS / layout.GRADING_LABEL_FILES[split]
    if exact.is_file():
        return exact
    word = "Training" if split == "train" else "Testing"
    found = sorted((root / layout.GRADING_LABELS).glob(f"*{word}*Labels*.csv"))
    return found[0] if found else None


def _read_grading_csv(path: Path, problems: list[Problem]) -> list[tuple[str, int]]:
    """(image name, DR grade) rows of an official grading CSV.

    The official files have a trailing space in a header and trailing empty columns: headers are
    stripped and empty columns ignored.
    """
    rows: list[tuple[str, int]] = []
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = [h.strip().lower() for h in next(reader, [])]
        try:
            name_col, grade_col = header.index("image name"), header.index("retinopathy grade")
        except ValueError:
            problems.append(Problem(str(path), "no 'Image name' / 'Retinopathy grade' columns: not read"))
            return rows
        for line_no, row in enumerate(reader, start=2):
            if not any(cell.strip() for cell in row):
                continue
            name = row[name_col].strip() if len(row) > name_col else ""
            raw = row[grade_col].strip() if len(row) > grade_col else ""
            if not name or not raw.isdigit() or int(raw) > 4:
                problems.append(
                    Problem(f"{path}:{line_no}", f"bad row {row[:3]}: expected an image name and a grade 0-4")
                )
                continue
            rows.append((name, int(raw)))
    return rows


def read_prepared(root: Path) -> Cohort:
    """The prepared layout in ../shared/data/idrid (see its README)."""
    problems: list[Problem] = []
    samples: list[Sample] = []
    seg = root / "segmentation"
    splits: dict[str, str] = {}
    manifest = seg / "manifest.csv"
    if manifest.is_file():
        with manifest.open(newline="", encoding="utf-8") as fh:
            splits = {row["image"]: row["split"] for row in csv.DictReader(fh)}
    masks: dict[str, dict[str, Path]] = {}
    for path in _files(seg / "masks", MASK_SUFFIXES):
        match = _MASK_NAME.match(path.stem)
        if match is None:
            problems.append(Problem(str(path), "not a mask name (expected IDRiD_NN_{MA,HE,EX,SE,OD}.png)"))
            continue
        masks.setdefault(match["image"], {})[match["kind"].upper()] = path
    images = {p.stem: p for p in _files(seg / "images", IMAGE_SUFFIXES)}
    for name in sorted(set(masks) - set(images)):
        for path in masks[name].values():
            problems.append(Problem(str(path), "mask without a matching segmentation image: ignored"))
    for name, image in images.items():
        sample = _dr_sample(f"segmentation/{name}", image, masks.get(name, {}), splits.get(name), problems)
        if sample is not None:
            samples.append(sample)

    grading = root / "grading"
    with (grading / "labels.csv").open(newline="", encoding="utf-8") as fh:
        for line_no, row in enumerate(csv.DictReader(fh), start=2):
            raw = (row.get("retinopathy_grade") or "").strip()
            name, split = (row.get("image") or "").strip(), (row.get("split") or "").strip()
            if not name or not raw.isdigit():
                problems.append(Problem(f"{grading / 'labels.csv'}:{line_no}", f"bad row: {dict(row)}"))
                continue
            if int(raw) != 0:
                continue
            rel = (row.get("path") or "").strip() or f"images/{split}/{name}.jpg"
            sample = _healthy_sample(f"grading/{split}/{name}", grading / rel, 0, split, problems)
            if sample is not None:
                samples.append(sample)
    return Cohort(source="prepared", root=root, samples=samples, skipped=problems)
