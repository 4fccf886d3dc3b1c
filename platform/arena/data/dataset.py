"""Datasets: importing the 2017 CSV format or a folder of photos, and synthetic sets.

An import checks every row first and reports every problem at once; only a fully valid
dataset is written, in one transaction, so a failed import leaves nothing behind but
content-addressed files that nothing refers to.
"""

import csv
import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import desc, select
from sqlalchemy.orm import Session

from arena.config import Settings
from arena.data.images import BadImage, center_crop_resize, encode_png, image_store, read_png
from arena.db import transaction
from arena.errors import InputError, NotFoundError
from arena.models import Batch, Dataset, Image

Track = Callable[[Iterable, str], Iterable]
MAX_LISTED_PROBLEMS = 30


def no_progress(items: Iterable, _description: str) -> Iterable:
    return items


class DatasetError(InputError):
    """Everything wrong with an input, one line per offending row."""

    def __init__(self, summary: str, problems: list[str]):
        listed = problems[:MAX_LISTED_PROBLEMS]
        more = len(problems) - len(listed)
        lines = [summary, *(f"  - {p}" for p in listed)]
        if more:
            lines.append(f"  ... and {more} more")
        super().__init__("\n".join(lines))
        self.problems = problems


@dataclass
class Row:
    """One image ready to store: its ImageId, labels and PNG bytes."""

    name: str
    true_label: int
    target_class: int
    png: bytes


def assign_target_class(name: str, true_label: int, seed: int) -> int:
    """A target in 1..1000 other than the true label, the same for the same (name, seed) on any machine."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    target = int.from_bytes(digest[:8], "big") % 999 + 1
    return target + 1 if target >= true_label else target


def _parse_label(value: str | None, column: str, offset: int = 0) -> tuple[int | None, str | None]:
    try:
        label = int((value or "").strip()) + offset
    except ValueError:
        return None, f"{column} {value!r} is not an integer"
    if not 1 <= label <= 1000:
        return None, f"{column} {value!r} is outside 1..1000" + (" after adding 1" if offset else "")
    return label, None


def _read_csv(path: Path, required: set[str]) -> list[dict[str, str]]:
    if not path.is_file():
        raise DatasetError(f"cannot import: {path} does not exist", [])
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = required - set(reader.fieldnames or [])
        if missing:
            raise DatasetError(f"{path.name}: missing column(s) {', '.join(sorted(missing))}", [])
        return list(reader)


def _duplicates(names: list[str]) -> set[str]:
    seen: set[str] = set()
    return {n for n in names if n in seen or seen.add(n)}


def read_competition_csv(csv_path: Path, images_dir: Path, seed: int = 0, track: Track = no_progress) -> list[Row]:
    """The 2017 format: ``ImageId,...,TrueLabel,TargetClass`` and ``<ImageId>.png`` files, already 299x299."""
    records = _read_csv(csv_path, {"ImageId", "TrueLabel"})
    problems: list[str] = []
    duplicates = _duplicates([r["ImageId"] for r in records])
    rows: list[Row] = []
    for number, record in enumerate(track(records, "checking images"), start=2):
        name = record["ImageId"].strip()
        where = f"row {number} ({name})"
        if name in duplicates:
            problems.append(f"{where}: duplicate ImageId")
            continue
        true_label, error = _parse_label(record.get("TrueLabel"), "TrueLabel")
        target, target_error = (None, None)
        if record.get("TargetClass", "").strip():
            target, target_error = _parse_label(record["TargetClass"], "TargetClass")
        image_path = images_dir / f"{name}.png"
        for message in (error, target_error):
            if message:
                problems.append(f"{where}: {message}")
        if not image_path.is_file():
            problems.append(f"{where}: image file {image_path.name} is missing")
            continue
        png = image_path.read_bytes()
        try:
            read_png(png)
        except BadImage as exc:
            problems.append(f"{where}: {image_path.name}: {exc}")
            continue
        if true_label is not None and not target_error:
            rows.append(Row(name, true_label, target or assign_target_class(name, true_label, seed), png))
    if problems:
        raise DatasetError(f"{csv_path.name}: {len(problems)} problem(s), nothing imported", problems)
    return rows


def read_photo_folder(folder: Path, labels_csv: Path, seed: int = 0, track: Track = no_progress) -> list[Row]:
    """Photos of any size with ``filename`` and ``TrueLabel`` (1-based) or ``class_index`` (0-based):
    centre-cropped and resized to 299x299, as imagenet-sample-1000 needs."""
    records = _read_csv(labels_csv, {"filename"})
    columns = set(records[0]) if records else set()
    if "TrueLabel" in columns:
        label_column, offset = "TrueLabel", 0
    elif "class_index" in columns:
        label_column, offset = "class_index", 1
    else:
        raise DatasetError(f"{labels_csv.name}: needs a TrueLabel (1..1000) or class_index (0..999) column", [])
    problems: list[str] = []
    duplicates = _duplicates([Path(r["filename"]).stem for r in records])
    rows: list[Row] = []
    for number, record in enumerate(track(records, "converting photos"), start=2):
        name = Path(record["filename"]).stem
        where = f"row {number} ({record['filename']})"
        if name in duplicates:
            problems.append(f"{where}: duplicate image name {name}")
            continue
        true_label, error = _parse_label(record.get(label_column), label_column, offset)
        if error:
            problems.append(f"{where}: {error}")
            continue
        path = folder / record["filename"]
        if not path.is_file():
            problems.append(f"{where}: file is missing")
            continue
        try:
            with PILImage.open(path) as photo:
                pixels = center_crop_resize(photo)
        except Exception as exc:
            problems.append(f"{where}: corrupt image ({exc.__class__.__name__}: {exc})")
            continue
        target = assign_target_class(name, true_label, seed)
        rows.append(Row(name, true_label, target, encode_png(pixels)))
    if problems:
        raise DatasetError(f"{labels_csv.name}: {len(problems)} problem(s), nothing imported", problems)
    return rows


# --- synthetic datasets -------------------------------------------------------------
#
# The class is written into the picture, so sample defenses can "classify" without a
# model: ten cells (2 rows x 5 columns) hold the bits of TrueLabel, least significant
# first; a 1-bit cell is 128+m, a 0-bit cell 127-m, with a margin m in 0..31 drawn per
# cell. An L-infinity change of eps flips a cell's bit only where m < eps, so attacks get
# stronger with eps as they do on real models. dataset/README.md documents the layout.

SYNTH_ROWS, SYNTH_COLUMNS, SYNTH_BITS = 2, 5, 10


def synthetic_cells(size: int = 299) -> Iterator[tuple[slice, slice]]:
    """The (rows, columns) slices of the ten cells, in bit order."""
    row_edges = np.linspace(0, size, SYNTH_ROWS + 1).astype(int)
    column_edges = np.linspace(0, size, SYNTH_COLUMNS + 1).astype(int)
    for bit in range(SYNTH_BITS):
        r, c = divmod(bit, SYNTH_COLUMNS)
        yield slice(row_edges[r], row_edges[r + 1]), slice(column_edges[c], column_edges[c + 1])


def synthetic_pixels(label: int, rng: np.random.Generator, size: int = 299) -> np.ndarray:
    pixels = np.zeros((size, size, 3), dtype=np.uint8)
    for bit, (rows, columns) in enumerate(synthetic_cells(size)):
        margin = int(rng.integers(0, 32))
        value = 128 + margin if (label >> bit) & 1 else 127 - margin
        pixels[rows, columns, :] = value
    return pixels


def synthesize(count: int, seed: int = 0, track: Track = no_progress) -> list[Row]:
    rng = np.random.default_rng(seed)
    rows = []
    for index in track(range(count), "drawing images"):
        name = f"synth{index:06d}"
        label = int(rng.integers(1, 1001))
        rows.append(Row(name, label, assign_target_class(name, label, seed), encode_png(synthetic_pixels(label, rng))))
    return rows


# --- storing --------------------------------------------------------------------------


def store_dataset(settings: Settings, name: str, rows: list[Row], batch_size: int | None = None) -> Dataset:
    """Write images to the store and rows to the database in one transaction, in batches of
    ``batch_size`` by ImageId order (the order is what makes batches reproducible)."""
    if not rows:
        raise DatasetError(f"dataset {name!r} has no images", [])
    batch_size = batch_size or settings.batch_size
    store = image_store(settings)
    with transaction(settings) as session:
        if session.scalar(select(Dataset).where(Dataset.name == name)):
            raise DatasetError(f"a dataset named {name!r} already exists; choose another --name", [])
        dataset = Dataset(name=name)
        session.add(dataset)
        session.flush()
        ordered = sorted(rows, key=lambda row: row.name)
        for start in range(0, len(ordered), batch_size):
            batch = Batch(dataset=dataset, index=start // batch_size)
            session.add(batch)
            for row in ordered[start : start + batch_size]:
                session.add(
                    Image(
                        batch=batch,
                        dataset_id=dataset.id,
                        name=row.name,
                        true_label=row.true_label,
                        target_class=row.target_class,
                        sha256=store.put(row.png),
                    )
                )
    return dataset


def pick_dataset(session: Session, name: str | None) -> Dataset:
    """The named dataset, or the newest (the tournament under way): what a run, a re-run or a
    page is about when none is named. A name that matches nothing is a NotFoundError (the web's
    404), not a bad input: the caller named a thing that does not exist."""
    if name is not None:
        try:
            return find_dataset(session, name)
        except DatasetError as exc:
            raise NotFoundError(str(exc)) from None
    dataset = session.scalar(select(Dataset).order_by(desc(Dataset.id)).limit(1))
    if dataset is None:
        raise NotFoundError("no dataset imported yet: import one with `arena dataset import`")
    return dataset


def find_dataset(session: Session, name: str | None) -> Dataset:
    """The named dataset, or the only one there is; a clear error otherwise."""
    if name is not None:
        dataset = session.scalar(select(Dataset).where(Dataset.name == name))
        if dataset is None:
            known = ", ".join(session.scalars(select(Dataset.name))) or "none"
            raise DatasetError(f"no dataset named {name!r} (known: {known})", [])
        return dataset
    datasets = list(session.scalars(select(Dataset)))
    if len(datasets) != 1:
        names = ", ".join(d.name for d in datasets) or "none imported yet"
        raise DatasetError(f"say which dataset with --dataset (datasets: {names})", [])
    return datasets[0]
