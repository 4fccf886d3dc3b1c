"""What the determinism probe adds to a dry run: one run of the batch (the dry run before the
probe), the probe's two runs each in a container of its own (before the probe shared the
dry run's container), and the dry run now (the batch run twice in one container, compared).

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
from arena.models import SubmissionKind
from arena.sandbox import pinning
from arena.sandbox.attack_run import CleanInput, execute_attack
from arena.sandbox.defense_run import DefenseInput, execute_defense

SAMPLES = ["noop", "random_noise", "decoder", "smoothed_decoder"]
#: Input names of runs outside any round: any key will do (a round has its own).
NAMING_KEY = bytes(32)


def _timed(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def _once(settings: Settings, code, images) -> None:
    """One run of the batch in a container of its own, as the dry run makes its first."""
    if code.kind is SubmissionKind.DEFENSE:
        execute_defense(settings, code, [DefenseInput(i.id, i.sha256, i.name) for i in images], NAMING_KEY)
    else:
        inputs = [CleanInput(i.id, i.sha256, i.target_class, i.name) for i in images]
        execute_attack(settings, code, inputs, max(settings.epsilons), NAMING_KEY)


def main(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        settings = Settings(data_dir=Path(scratch) / "arena")
        db.upgrade(settings)
        store_dataset(settings, "bench", synthesize(100))
        with transaction(settings) as session:
            images = dry_run.sample_batch(session)
        print(f"rounds: {rounds}, {len(images)} images per run; medians")
        print("| sample | one run | two runs, a container each | dry run with the probe, one container | "
              "ratio to one run | ratio to a container each |")
        print("|---|---|---|---|---|---|")
        for name in SAMPLES:
            folder = REPO_ROOT / "submissions" / "samples" / name
            metadata = Metadata.model_validate_json((folder / "metadata.json").read_text())
            code = metadata.code(folder, pinning.pin(metadata.model_dump()))
            once, twice, probed = [], [], []
            for _ in range(rounds):
                once.append(_timed(lambda: _once(settings, code, images)))
                twice.append(_timed(lambda: [_once(settings, code, images) for _ in range(2)]))
                probed.append(_timed(lambda: dry_run.validate(settings, code, images, NAMING_KEY)))
            a, b, c = statistics.median(once), statistics.median(twice), statistics.median(probed)
            print(f"| {name} | {a:.2f} s | {b:.2f} s | {c:.2f} s | {c / a:.2f} | {c / b:.2f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    main(parser.parse_args().rounds)
