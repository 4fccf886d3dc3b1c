"""One simulated worker of ``bench/final2017.py``: a real Celery worker of Arena's app (its
task, ``pack_run.run_pack`` with its claim, fencing, load and store, the answers into
``classifications`` and the tallies) in which only the container run is simulated.

The simulated defense answers every image at once, deterministically from the image and the
submission (60% right, 10% on the target class, 1% missing, the rest wrong: a hash of the
two), and reports a run time drawn from the submission's speed (log-normal seconds per image,
drawn once per submission from its id) times a per-run jitter: the compute the real final
would have spent, which the benchmark sums. ``--time-scale`` sleeps that time scaled (0: not
at all, so that the control plane alone is measured).

Each pack appends one JSON line to the stats file: when its claim started, how long the
claim, the load and the store took, its jobs and images, and the simulated seconds.

    .venv/bin/python bench/final2017_worker.py DATABASE_URL BROKER_URL STATS NAME --time-scale 0
"""

import argparse
import hashlib
import json
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from celery import signals
from sqlalchemy import select

from arena.config import Settings
from arena.db import transaction
from arena.execution import broker, pack_run
from arena.models import ClassificationProblem, Image
from arena.sandbox import containers
from arena.sandbox.code import StoredSubmission, SubmissionCode
from arena.sandbox.containers import RunResult
from arena.sandbox.defense_run import DefenseInput, DefenseOutcome
from arena.sandbox.result_csv import Answer

#: Seconds per image of the median submission, and the spread of submissions around it
#: (log-normal sigma); a run's own jitter around its submission's speed.
MEDIAN_SECONDS_PER_IMAGE, SUBMISSION_SIGMA, RUN_SIGMA = 0.2, 0.8, 0.1
PIN = {"container": "sha256:" + "0" * 64}


def draw(*parts: object) -> float:
    """A uniform number in [0, 1) fixed by ``parts``: the same on every worker and re-run."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest) / 2**64


def normal(*parts: object) -> float:
    """A standard normal number fixed by ``parts`` (Box-Muller on two draws)."""
    return math.sqrt(-2 * math.log(1 - draw(*parts, "r"))) * math.cos(2 * math.pi * draw(*parts, "theta"))


def seconds_per_image(submission_id: int) -> float:
    """The submission's speed, the same wherever it is asked (the bench packs with it)."""
    return MEDIAN_SECONDS_PER_IMAGE * math.exp(SUBMISSION_SIGMA * normal("speed", submission_id))


def answer(submission_id: int, sha256: str, truth: tuple[int, int]) -> Answer:
    """The simulated defense's answer for one image, from the image and the submission only."""
    r = draw(submission_id, sha256)
    true_label, target_class = truth
    if r < 0.01:
        return Answer(None, ClassificationProblem.MISSING)
    label = true_label if r < 0.60 else target_class if r < 0.70 else 1 + int(r * 1e6) % 1000
    return Answer(label)


def simulated_defense(truths: dict[str, tuple[int, int]], time_scale: float, record: dict
                      ) -> Callable[..., DefenseOutcome]:
    """``execute_defense`` without a container: the answers and the run time drawn."""

    def execute(_settings: Settings, code: SubmissionCode, inputs: list[DefenseInput], _key: bytes) -> DefenseOutcome:
        submission_id = int(code.root.name)  # the bench's submissions have their id as their hash
        seconds = len(inputs) * seconds_per_image(submission_id) * math.exp(
            RUN_SIGMA * normal("run", submission_id, inputs[0].sha256, len(inputs)))
        record["simulated_seconds"] = seconds
        if time_scale:
            time.sleep(seconds * time_scale)
        answers = {i.key: answer(submission_id, i.sha256, truths[i.sha256]) for i in inputs}
        return DefenseOutcome(RunResult(0, False, None, seconds, ""), answers)

    return execute


def stored_code(settings: Settings, submission: StoredSubmission) -> SubmissionCode:
    """The submission's code, pinned, with no engine to ask (nothing is run)."""
    return SubmissionCode.stored(settings, submission, PIN)


def timed(record: dict, name: str, function: Callable) -> Callable:
    def wrapper(*arguments, **keywords):
        started = time.time()
        try:
            return function(*arguments, **keywords)
        finally:
            record[f"{name}_start"], record[f"{name}_s"] = started, time.time() - started

    return wrapper


def install(settings: Settings, stats: Path, time_scale: float) -> None:
    """Replace the container run (and the engine's sweep) in ``pack_run``; time the rest."""
    with transaction(settings) as session:
        truths = {sha: (label, target) for sha, label, target in
                  session.execute(select(Image.sha256, Image.true_label, Image.target_class))}
    record: dict = {}
    pack_run.execute_defense = simulated_defense(truths, time_scale, record)
    pack_run.submission_code = stored_code
    containers.sweep = lambda: 0
    for name in ("claim", "_load", "_store"):
        setattr(pack_run, name, timed(record, name.strip("_"), getattr(pack_run, name)))
    run_pack = pack_run.run_pack

    def recorded(settings_: Settings, pack: pack_run.Pack, worker_id: int | None = None) -> pack_run.PackResult:
        record.clear()
        result = run_pack(settings_, pack, worker_id)
        with stats.open("a") as out:
            out.write(json.dumps({**record, "jobs": result.finished, "offered": len(pack.job_ids),
                                  "end": time.time()}) + "\n")
        return result

    broker.run_pack = recorded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("database_url")
    parser.add_argument("broker_url")
    parser.add_argument("stats", type=Path)
    parser.add_argument("name")
    parser.add_argument("--time-scale", type=float, default=0.0)
    arguments = parser.parse_args()
    settings = Settings(data_dir=Path(tempfile.gettempdir()), database_url=arguments.database_url,
                        broker_url=arguments.broker_url)
    install(settings, arguments.stats, arguments.time_scale)
    ready = arguments.stats.with_suffix(".ready")
    signals.worker_ready.connect(lambda **_: ready.touch(), weak=False)
    broker.celery_app(settings).worker_main(
        ["worker", "--pool", "solo", "--queues", "cpu", "--hostname", f"{arguments.name}@final2017",
         "--loglevel", "WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat"])


if __name__ == "__main__":
    main()
