"""What gVisor costs: the same sandboxed work under runsc against runc, in one invocation.

Three measurements, each the median of ``--rounds`` runs, the two runtimes alternating
(ratios survive a noisy machine; absolute times do not), every sandbox limit on:

- start-up: one ``containers.run`` of ``true`` (create, start, watch, remove);
- a sample defense's batch: ``execute_defense`` of the ``decoder`` sample on 100 synthetic
  images (staging, the run, result.csv);
- a real-model defense's batch: ``execute_defense`` of EfficientNet-Lite0
  (``submissions/real/lite0``, torch) on ``--photos`` ImageNet photos; skipped, saying why,
  without ../shared/datasets/imagenet-sample-1000 or when the torch image cannot be built.

    scripts/with-docker.sh .venv/bin/python bench/gvisor.py [--rounds 5] [--photos 100]
"""

import argparse
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from docker.errors import DockerException

from arena import REPO_ROOT, db
from arena.config import SandboxLimits, Settings
from arena.data.dataset import read_photo_folder, synthesize
from arena.data.images import ImageStore
from arena.errors import ArenaError
from arena.intake.metadata import Metadata
from arena.sandbox import containers
from arena.sandbox.code import SubmissionCode
from arena.sandbox.defense_run import DefenseInput, execute_defense
from arena.tools import base_image
from arena.tools.study import DEFAULT_PHOTOS, REAL_SAMPLES

RUNTIMES = ("runc", "runsc")
IMAGE = "arena/python:bookworm"
#: Input names of runs outside any round: any key will do (a round has its own).
NAMING_KEY = bytes(32)


def _code(folder: Path) -> SubmissionCode:
    return Metadata.model_validate_json((folder / "metadata.json").read_text()).code(folder)


def _median_seconds(work: Callable[[str], None], rounds: int) -> dict[str, float]:
    """``work(runtime)`` timed ``rounds`` times per runtime, alternating, after one warm-up each."""
    times: dict[str, list[float]] = {runtime: [] for runtime in RUNTIMES}
    for runtime in RUNTIMES:
        work(runtime)  # page cache, image layers, the torch import: warm for both sides
    for _ in range(rounds):
        for runtime in RUNTIMES:
            start = time.perf_counter()
            work(runtime)
            times[runtime].append(time.perf_counter() - start)
    return {runtime: statistics.median(seconds) for runtime, seconds in times.items()}


def _start_up(scratch: Path, limits: dict[str, SandboxLimits]) -> Callable[[str], None]:
    output = scratch / "empty-output"
    output.mkdir()

    def run(runtime: str) -> None:
        result = containers.run(IMAGE, ["true"], [], output=output, time_limit=60, limits=limits[runtime])
        assert result.succeeded, result.log_tail

    return run


def _defense(settings: dict[str, Settings], code: SubmissionCode, shas: list[str]) -> Callable[[str], None]:
    inputs = [DefenseInput(k, sha, str(k)) for k, sha in enumerate(shas)]

    def run(runtime: str) -> None:
        outcome = execute_defense(settings[runtime], code, inputs, NAMING_KEY)
        assert outcome.run.succeeded and all(a.label for a in outcome.answers.values()), outcome.run.log_tail

    return run


def _photos(count: int, scratch: Path) -> list:
    lines = (DEFAULT_PHOTOS / "labels.csv").read_text().splitlines()
    step = max(1, (len(lines) - 1) // count)
    (scratch / "labels.csv").write_text("\n".join([lines[0], *lines[1::step][:count]]) + "\n")
    return read_photo_folder(DEFAULT_PHOTOS / "images", scratch / "labels.csv")


def _real_model_skipped(settings: Settings) -> str | None:
    """Why the real-model part cannot run here, or None when it can."""
    if not DEFAULT_PHOTOS.is_dir():
        return "no ImageNet sample at ../shared/datasets/imagenet-sample-1000"
    try:
        base_image.build(settings, ["python", "torch"], say=print)
    except (ArenaError, OSError, subprocess.SubprocessError, DockerException) as exc:  # no torch wheel, no debootstrap
        return f"the torch image cannot be built ({exc})"
    return None


def _row(name: str, seconds: dict[str, float]) -> str:
    runc, runsc = seconds["runc"], seconds["runsc"]
    return f"| {name} | {runc:.3f} s | {runsc:.3f} s | **{runsc / runc:.2f}** | {runsc - runc:+.3f} s |"


def main(rounds: int, photos: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        base = Settings(data_dir=scratch / "arena")
        db.upgrade(base)
        settings = {runtime: base.model_copy(update={"sandbox": base.sandbox.model_copy(update={"runtime": runtime})})
                    for runtime in RUNTIMES}
        store = ImageStore(base.store_dir)
        rows = [_row("start-up (`true`)", _median_seconds(_start_up(scratch, {r: s.sandbox for r, s in settings.items()}), rounds))]
        synthetic = [store.put(row.png) for row in synthesize(100)]
        decoder = REPO_ROOT / "submissions" / "samples" / "decoder"
        rows.append(_row("`decoder` sample, 100 synthetic images", _median_seconds(_defense(settings, _code(decoder), synthetic), rounds)))
        skipped = _real_model_skipped(base)
        if skipped is None:
            shas = [store.put(row.png) for row in _photos(photos, scratch)]
            rows.append(_row(f"`lite0` (EfficientNet-Lite0, torch), {len(shas)} photos",
                             _median_seconds(_defense(settings, _code(REAL_SAMPLES / "lite0"), shas), rounds)))
    print(f"rounds: {rounds}, medians, runc and runsc alternating; limits: {base.sandbox.cpus:g} CPU, {base.sandbox.memory}")
    print("| work | runc | runsc | ratio runsc / runc | difference |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))
    if skipped:
        print(f"real-model batch skipped: {skipped}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--photos", type=int, default=100)
    arguments = parser.parse_args()
    main(arguments.rounds, arguments.photos)
