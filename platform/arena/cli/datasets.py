"""``arena dataset``: importing the 2017 format and photo folders, synthetic datasets, listing them."""

from pathlib import Path
from typing import Annotated, Optional

import typer
from sqlalchemy import select

from arena import db
from arena.cli.common import Commands, RoundForDataset, console, database, print_rows, settings, tracked
from arena.competition import rounds
from arena.data.dataset import DatasetError, read_competition_csv, read_photo_folder, store_dataset, synthesize
from arena.models import Dataset

dataset_app = Commands(help="Import and list image datasets.", no_args_is_help=True)


@dataset_app.command("import")
def dataset_import(
    folder: Annotated[Path, typer.Argument(help="Folder with the CSV and the images.")],
    csv_file: Annotated[Optional[Path], typer.Option("--csv", help="The labels CSV (default: the only *.csv in FOLDER).")] = None,
    images: Annotated[Optional[Path], typer.Option(help="Image folder (default: FOLDER/images if present, else FOLDER).")] = None,
    name: Annotated[Optional[str], typer.Option(help="Dataset name (default: the folder's name).")] = None,
    seed: Annotated[int, typer.Option(help="Seed for TargetClass where the CSV has none.")] = 0,
    round_name: RoundForDataset = None,
) -> None:
    """Import a dataset: the 2017 format (ImageId,...,TrueLabel,TargetClass with ImageId.png files,
    299x299) or photos of any size with a labels CSV (filename + TrueLabel or class_index), which
    are centre-cropped and resized to 299x299."""
    csv_path = csv_file or _only_csv(folder)
    image_dir = images or (folder / "images" if (folder / "images").is_dir() else folder)
    header = csv_path.open(encoding="utf-8-sig").readline() if csv_path.is_file() else ""
    if "ImageId" in header.strip().split(","):
        rows = read_competition_csv(csv_path, image_dir, seed=seed, track=tracked)
    else:
        rows = read_photo_folder(image_dir, csv_path, seed=seed, track=tracked)
    _store(rows, name or folder.resolve().name, round_name)


def _only_csv(folder: Path) -> Path:
    found = sorted(folder.glob("*.csv")) if folder.is_dir() else []
    if len(found) != 1:
        raise DatasetError(f"{folder}: expected one .csv file, found {len(found)}; pass --csv", [])
    return found[0]


def _store(rows, name: str, round_name: str | None) -> None:
    """Store the dataset and, unless told not to, open a round on it with the settings' epsilons
    and time limit (``arena round set`` changes its window, quotas and visibility)."""
    dataset = store_dataset(database(), name, rows)
    console.print(f"imported dataset {dataset.name!r}: {len(rows)} images in batches of {settings().batch_size}")
    if round_name != "":
        with db.transaction(database()) as session:
            round_ = rounds.create(session, settings(), round_name or name, session.get_one(Dataset, dataset.id))
            console.print(f"round {round_.name!r} open for uploads, epsilons {round_.epsilons}")


@dataset_app.command("synth")
def dataset_synth(
    count: Annotated[int, typer.Argument(help="Number of images.", min=1)],
    name: Annotated[str, typer.Option(help="Dataset name.")] = "synthetic",
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same images.")] = 0,
    round_name: RoundForDataset = None,
) -> None:
    """Make a synthetic dataset whose class is written in the picture (see dataset/README.md)."""
    _store(synthesize(count, seed=seed, track=tracked), name, round_name)


@dataset_app.command("list")
def dataset_list() -> None:
    """List imported datasets."""
    with db.transaction(database()) as session:
        rows = [[d.name, str(len(d.batches)), str(sum(len(b.images) for b in d.batches))]
                for d in session.scalars(select(Dataset).order_by(Dataset.id))]
    print_rows(["Dataset", "Batches", "Images"], rows)
