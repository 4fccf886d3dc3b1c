"""What the determinism probe adds to a dry run: the dry run before it (one run of the batch)
against the dry run now (the batch run twice and compared).

Each sample runs on the same 100-image batch, both sides alternating in one invocation
(ratios survive a noisy machine; absolute times do not), with its image pinned as intake
pins it.

    .venv/bin/python bench/dry_run.py [--rounds 3]
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from arena import REPO_ROOT, db
from arena.config import Settings
from arena.data.dataset import store_dataset, synthesize
from arena.db import transaction
from arena.intake import dry_run
from arena.intake.metadata import Metadata
from arena.sandbox import pinning

SAMPLES = ["noop", "random_noise", "decoder", "smoothed_decoder"]
#: Input names of runs outside any round: any key will do (a round has its own).
NAMING_KEY = bytes(32)


def _timed(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def main(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        settings = Settings(data_dir=Path(scratch) / "arena")
        db.upgrade(settings)
        store_dataset(settings, "bench", synthesize(100))
        with transaction(settings) as session:
            images = dry_run.sample_batch(session)
        print(f"rounds: {rounds}, {len(images)} images per run; medians")
        print("| sample | one run (before) | dry run with the probe | ratio |")
        print("|---|---|---|---|")
        for name in SAMPLES:
            folder = REPO_ROOT / "submissions" / "samples" / name
            metadata = Metadata.model_validate_json((folder / "metadata.json").read_text())
            code = metadata.code(folder, pinning.pin(metadata.model_dump()))
            once, probed = [], []
            for _ in range(rounds):
                once.append(_timed(lambda: dry_run._execute(settings, code, images, NAMING_KEY)))
                probed.append(_timed(lambda: dry_run.validate(settings, code, images, NAMING_KEY)))
            a, b = statistics.median(once), statistics.median(probed)
            print(f"| {name} | {a:.2f} s | {b:.2f} s | {b / a:.2f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    main(parser.parse_args().rounds)
