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

With ``--compare CHECKOUT``, the Arena of another checkout (its ``platform`` folder, run in a
child process) runs the same job in this invocation too, alternating with this one at each
concurrency, so that a change is measured before and after under the same load.

    .venv/bin/python bench/tournament.py [--images 500] [--photos] [--compare ../before]
"""

import argparse
import json
import os
import subprocess
import sys
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


def _rows(images: int, photos: bool):
    return read_photo_folder(PHOTOS / "images", PHOTOS / "labels.csv")[:images] if photos else synthesize(images)


def _compared(checkout: Path, images: int, photos: bool, scratch: Path, concurrency: int) -> tuple[float, float, int, int]:
    """``arena_tournament`` with the Arena of ``checkout``, in a child process."""
    command = [sys.executable, __file__, "--images", str(images), "--arena-only", str(concurrency), "--scratch", str(scratch),
               *(["--photos"] if photos else [])]
    done = subprocess.run(command, env={**os.environ, "PYTHONPATH": str(checkout.resolve() / "platform")},
                          capture_output=True, text=True, check=True)
    return tuple(json.loads(done.stdout.splitlines()[-1]))


def main(images: int, photos: bool, compare: Path | None) -> None:
    rows = _rows(images, photos)
    arena: dict[int, tuple] = {}
    other: dict[int, tuple] = {}
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        naive = naive_tournament(rows, root / "naive", DEFENSES)
        naive_column = naive_tournament(rows, root / "naive", [ADDED], attacks_too=False)
        for concurrency in (2, 1):  # the other checkout first, then this one, at each concurrency
            if compare:
                other[concurrency] = _compared(compare, images, photos, root / f"other-{concurrency}", concurrency)
            arena[concurrency] = arena_tournament(rows, root / f"this-{concurrency}", concurrency)
    naive_runs = len(ATTACKS) * len(EPSILONS) + len(DEFENSES) * (len(ATTACKS) * len(EPSILONS) + 1)
    columns = [("arena", arena)] + ([(f"arena of {compare}", other)] if compare else [])
    table = Table("measure", "naive", *(f"{name}, ratio to naive" for name, _ in columns))
    whole = f"whole job: import, intakes, tournament ({len(ATTACKS)} attacks x {len(DEFENSES)} defense, {len(rows)} " \
            f"{'photos' if photos else 'images'}, 4 eps)"
    added = f"adding one defense ({ADDED}), its intake included, vs its own column"
    for concurrency in (2, 1):
        at = "2 runs at a time (the default)" if concurrency == 2 else "1 run at a time (like the naive runner)"
        table.add_row(f"{whole}, {at}", f"{naive:.1f} s, {naive_runs} runs",
                      *(f"{f[concurrency][0]:.1f} s, {f[concurrency][2]} runs: {f[concurrency][0] / naive:.2f}" for _, f in columns))
        table.add_row(f"{added}, {at}", f"{naive_column:.1f} s, {len(ATTACKS) * len(EPSILONS) + 1} runs",
                      *(f"{f[concurrency][1]:.1f} s, {f[concurrency][3]} runs: {f[concurrency][1] / naive_column:.2f}"
                        for _, f in columns))
    Console(width=180).print(table)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--photos", action="store_true", help="imagenet-sample-1000's photos, not synthetic images")
    parser.add_argument("--compare", type=Path, help="another checkout whose Arena runs the same job in this invocation")
    parser.add_argument("--arena-only", type=int, help=argparse.SUPPRESS)  # --compare's child: this concurrency only
    parser.add_argument("--scratch", type=Path, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.arena_only:
        arguments.scratch.mkdir(parents=True)
        print(json.dumps(arena_tournament(_rows(arguments.images, arguments.photos), arguments.scratch, arguments.arena_only)))
    else:
        main(arguments.images, arguments.photos, arguments.compare)
