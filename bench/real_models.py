"""Seconds each real-model sample submission needs for one batch of real photos, under the
tournament's sandbox (1 CPU per container unless ARENA_SANDBOX_CPUS says otherwise), against
the 500 s per 100 images limit. Attacks run at eps 16; defenses on the clean batch.

    .venv/bin/python bench/real_models.py [--images 100] [--only fgsm lite0 ...]
"""

import argparse
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from arena import REPO_ROOT, db
from arena.config import Settings
from arena.data.dataset import read_photo_folder, store_dataset
from arena.data.images import ImageStore
from arena.intake.metadata import Metadata
from arena.sandbox.attack_run import CleanInput, execute_attack
from arena.sandbox.defense_run import DefenseInput, execute_defense

REAL = REPO_ROOT / "submissions" / "real"
PHOTOS = REPO_ROOT.parent / "shared" / "datasets" / "imagenet-sample-1000"
#: Input names of runs outside any round: any key will do (a round has its own).
NAMING_KEY = bytes(32)


def _rows(images: int, scratch: Path):
    lines = (PHOTOS / "labels.csv").read_text().splitlines()
    step = max(1, (len(lines) - 1) // images)
    (scratch / "labels.csv").write_text("\n".join([lines[0], *lines[1::step][:images]]) + "\n")
    return read_photo_folder(PHOTOS / "images", scratch / "labels.csv")


def main(images: int, only: list[str]) -> None:
    console = Console()
    with tempfile.TemporaryDirectory() as scratch:
        settings = Settings(data_dir=Path(scratch) / "arena")
        db.upgrade(settings)
        rows = _rows(images, Path(scratch))
        store_dataset(settings, "bench", rows, batch_size=images)
        store = ImageStore(settings.store_dir)
        truth = {k: r.true_label for k, r in enumerate(rows)}
        table = Table("submission", "images", "seconds", "limit", "result")
        for folder in sorted(p for p in REAL.iterdir() if (p / "metadata.json").is_file()):
            if only and folder.name not in only:
                continue
            code = Metadata.model_validate_json((folder / "metadata.json").read_text()).code(folder)
            if code.metadata.type == "defense":
                outcome = execute_defense(settings, code, [DefenseInput(k, store.put(r.png), r.name) for k, r in enumerate(rows)],
                                          NAMING_KEY)
                correct = sum(a.label == truth[k] for k, a in outcome.answers.items())
                result = f"top-1 {correct / len(rows):.0%}"
            else:
                inputs = [CleanInput(k, store.put(r.png), r.target_class, r.name) for k, r in enumerate(rows)]
                outcome = execute_attack(settings, code, inputs, 16, NAMING_KEY)
                result = f"{sum(not r.missing for r in outcome.results)} outputs"
            status = "ok" if outcome.run.succeeded else outcome.run.describe()
            table.add_row(folder.name, str(len(rows)), f"{outcome.run.seconds:.1f}", f"{settings.time_limit(len(rows)):.0f}", f"{result} ({status})")
            console.print(f"{folder.name}: {outcome.run.seconds:.1f} s, {result} ({status})")
        console.print(table)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--only", nargs="*", default=[])
    arguments = parser.parse_args()
    main(arguments.images, arguments.only)
