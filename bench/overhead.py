"""Platform overhead per batch: Arena's defense run against a bare container run.

Both sides run the sample ``decoder`` defense on the same 100-image batch in the same
image, alternating, in one invocation (ratios survive a noisy machine; absolute times do
not). The bare side is what a naive runner does: one ``containers.run`` on a folder, no
limits, no staging, no watchdog, no parsing. Arena's side is ``execute_defense``: opaque
staging, every sandbox limit, the watchdog, result.csv parsing.

    .venv/bin/python bench/overhead.py [--rounds 5]
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from arena import REPO_ROOT, db
from arena.config import Settings
from arena.data.dataset import store_dataset, synthesize
from arena.data.images import ImageStore
from arena.intake.metadata import Metadata
from arena.sandbox.containers import docker_client
from arena.sandbox.defense_run import DefenseInput, execute_defense

DECODER = REPO_ROOT / "submissions" / "samples" / "decoder"
IMAGE = "arena/python:bookworm"
#: Input names of runs outside any round: any key will do (a round has its own).
NAMING_KEY = bytes(32)


def bare_run(images: Path, output: Path) -> None:
    docker_client().containers.run(
        IMAGE,
        ["./run_defense.sh", "/input_images", "/output_data/result.csv"],
        volumes={str(DECODER): {"bind": "/code", "mode": "ro"}, str(images): {"bind": "/input_images", "mode": "ro"},
                 str(output): {"bind": "/output_data", "mode": "rw"}},
        working_dir="/code",
        remove=True,
    )


def main(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        settings = Settings(data_dir=Path(scratch) / "arena")
        db.upgrade(settings)
        rows = synthesize(100)
        store_dataset(settings, "bench", rows)
        store = ImageStore(settings.store_dir)
        inputs = [DefenseInput(k, store.put(r.png), r.name) for k, r in enumerate(rows)]
        folder, output = Path(scratch) / "bare-in", Path(scratch) / "bare-out"
        folder.mkdir()
        output.mkdir()
        for k, row in enumerate(rows):
            (folder / f"{k}.png").write_bytes(row.png)
        code = Metadata.model_validate_json((DECODER / "metadata.json").read_text()).code(DECODER)
        bare, arena = [], []
        bare_run(folder, output)  # warm the page cache for both sides
        for _ in range(rounds):
            start = time.perf_counter()
            bare_run(folder, output)
            bare.append(time.perf_counter() - start)
            start = time.perf_counter()
            outcome = execute_defense(settings, code, inputs, NAMING_KEY)
            arena.append(time.perf_counter() - start)
            assert outcome.run.succeeded and all(a.label for a in outcome.answers.values())
    b, a = statistics.median(bare), statistics.median(arena)
    print(f"rounds: {rounds}, 100 images per run")
    print(f"bare container run (median): {b:.3f} s")
    print(f"arena defense run  (median): {a:.3f} s")
    print(f"ratio arena / bare: {a / b:.2f}  (overhead {a - b:+.3f} s per batch)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    main(parser.parse_args().rounds)
