"""A whole tournament, and one added defense, against a naive sequential runner.

The naive runner is what one would script by hand: one container run per attack and eps
over the whole image folder, then one per defense over each attack's output folder and
the clean folder; no database, no limits, no clipping, nothing stored per image. Arena
runs the same submissions on the same images with every limit, clipping, hashing and
per-image storage, packing batches into runs. Arena's figure is its whole job: the
dataset's import, each submission's intake (taken in queued, then its dry run and
determinism probe, which ``run`` does first) and the tournament; the naive runner has
none of that. Both run in this one invocation, on the same engine; the figures are ratios. With ``--photos``, the images are photos of
imagenet-sample-1000 (../shared/datasets, centre-cropped to 299x299) instead of synthetic
ones: the platform's work per image (decoding, clipping, encoding) is larger on photos.

    .venv/bin/python bench/tournament.py [--images 500] [--photos]
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from arena import REPO_ROOT, db
from arena.competition import rounds
from arena.config import Settings
from arena.data.dataset import read_photo_folder, store_dataset, synthesize
from arena.execution.run import run
from arena.intake.archive import pack
from arena.intake.submit import take
from arena.models import Dataset
from arena.sandbox.containers import docker_client

SAMPLES = REPO_ROOT / "submissions" / "samples"
PHOTOS = REPO_ROOT.parent / "shared" / "datasets" / "imagenet-sample-1000"
ATTACKS = ["noop", "random_noise", "step_to_target"]
DEFENSES = ["decoder"]
ADDED = "smoothed_decoder"
EPSILONS = [2, 4, 8, 16]
IMAGE = "arena/python:bookworm"


def _naive_run(code: Path, inputs: Path, output: Path, *arguments: str) -> None:
    output.mkdir(parents=True, exist_ok=True)
    mount = "/output_data" if arguments[0].startswith("/output_data") else "/output_images"
    entry_point = json.loads((code / "metadata.json").read_text())["entry_point"]
    docker_client().containers.run(
        IMAGE,
        [f"./{entry_point}", "/input_images", *arguments],
        volumes={str(code): {"bind": "/code", "mode": "ro"}, str(inputs): {"bind": "/input_images", "mode": "ro"},
                 str(output): {"bind": mount, "mode": "rw"}},
        working_dir="/code",
        network_mode="none",  # as Arena's sandbox: no bridge network needed on the engine
        remove=True,
    )


def naive_tournament(rows, scratch: Path, defenses: list[str], attacks_too: bool = True) -> float:
    clean = scratch / "clean"
    if not clean.exists():
        clean.mkdir(parents=True)
        for row in rows:
            (clean / f"{row.name}.png").write_bytes(row.png)
        (clean / "target_class.csv").write_text("".join(f"{r.name}.png,{r.target_class}\n" for r in rows))
    started = time.perf_counter()
    outputs = []
    for attack in ATTACKS:
        for eps in EPSILONS:
            out = scratch / "adv" / f"{attack}-{eps}"
            if attacks_too:
                _naive_run(SAMPLES / attack, clean, out, "/output_images", str(eps))
            outputs.append(out)
    for defense in defenses:
        for folder in [clean, *outputs]:
            _naive_run(SAMPLES / defense, folder, scratch / "labels" / defense / folder.name, "/output_data/result.csv")
    return time.perf_counter() - started


def arena_tournament(rows, scratch: Path, concurrency: int) -> tuple[float, float, int, int]:
    """Arena's whole job, then one added defense's, each with its intake: (seconds, seconds,
    container runs of the tournament, of the added defense's column)."""
    settings = Settings(data_dir=scratch / f"arena-{concurrency}", epsilons=EPSILONS, concurrency=concurrency)
    db.upgrade(settings)
    archives = {name: pack(SAMPLES / name, scratch / f"{name}.tar.gz") for name in ATTACKS + DEFENSES + [ADDED]}
    started = time.perf_counter()
    dataset = store_dataset(settings, "bench", rows)
    with db.transaction(settings) as session:
        rounds.ensure(session, settings, session.get_one(Dataset, dataset.id))  # as `arena dataset import` does
    for name in ATTACKS + DEFENSES:
        take(settings, archives[name], team=name)
    whole = run(settings)  # the dry runs first, then the tournament
    whole_seconds = time.perf_counter() - started
    started = time.perf_counter()
    take(settings, archives[ADDED], team=ADDED)
    added = run(settings)
    return whole_seconds, time.perf_counter() - started, whole.container_runs, added.container_runs


def main(images: int, photos: bool) -> None:
    rows = read_photo_folder(PHOTOS / "images", PHOTOS / "labels.csv")[:images] if photos else synthesize(images)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        naive = naive_tournament(rows, root / "naive", DEFENSES)
        naive_column = naive_tournament(rows, root / "naive", [ADDED], attacks_too=False)
        whole, added, runs, added_runs = arena_tournament(rows, root, concurrency=2)
        serial, serial_added, _, _ = arena_tournament(rows, root, concurrency=1)
    naive_runs = len(ATTACKS) * len(EPSILONS) + len(DEFENSES) * (len(ATTACKS) * len(EPSILONS) + 1)
    table = Table("measure", "naive", "arena", "ratio arena / naive")
    table.add_row(f"whole job: import, intakes, tournament ({len(ATTACKS)} attacks x {len(DEFENSES)} defense, {len(rows)} "
                  f"{'photos' if photos else 'images'}, 4 eps)",
                  f"{naive:.1f} s, {naive_runs} runs", f"{whole:.1f} s, {runs} runs", f"{whole / naive:.2f}")
    table.add_row(f"adding one defense ({ADDED}), its intake included, vs its own column", f"{naive_column:.1f} s, {len(ATTACKS) * len(EPSILONS) + 1} runs",
                  f"{added:.1f} s, {added_runs} runs", f"{added / naive_column:.2f}")
    table.add_row("the same two, Arena running one container at a time (like the naive runner)",
                  f"{naive:.1f} s / {naive_column:.1f} s", f"{serial:.1f} s / {serial_added:.1f} s",
                  f"{serial / naive:.2f} / {serial_added / naive_column:.2f}")
    Console().print(table)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--photos", action="store_true", help="imagenet-sample-1000's photos, not synthetic images")
    arguments = parser.parse_args()
    main(arguments.images, arguments.photos)
