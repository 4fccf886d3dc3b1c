"""What the intervals and the worst case cost where the cache is filled, at the 2017 size:
100 attacks x 100 defenses x 5000 images x 4 eps (200 million answers), synthetic and in
memory (the per-image outcomes as ``outcomes.ImageOutcomes`` holds them after its query).

Baseline, in the same invocation: the three leaderboards from the tallies alone
(``Standings``: the point figures, what the cache computed before). Measured against it:
``Leaderboards.compute`` (the same boards with every interval, the worst case, the unique
contributions and beats_next), and its parts; and the matrix cells' intervals for a full
100 x 100 view at one eps and over all eps, against the same view without them. Rounds
alternate baseline and measure; medians are reported.

With ``--database IMAGES``, also what reading the per-image outcomes costs: a tournament of
the same shape with IMAGES images written into SQLite (``bench/web.py``'s ``fabricate``),
and ``ImageOutcomes.load`` (its queries over every answer) against ``Standings.compute``
(the tallies); and the web cache's refresh after one defense job lands, which reads only
that job's answers and adds them.

    nice .venv/bin/python bench/intervals.py [--attacks 100] [--defenses 100] [--images 5000] [--rounds 5]
                                             [--database 100]
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import delete, select

from arena.config import Settings
from arena.db import transaction, upgrade
from arena.models import Classification, Dataset, DefenseJob, JobStatus
from arena.results import intervals, tallies
from arena.results.intervals import binomial_interval, resampling_weights
from arena.results.leaderboards import Leaderboards
from arena.results.outcomes import ImageOutcomes
from arena.results.robustness import robust_accuracy, unique_contributions
from arena.results.scoring import CELL_COLUMNS, Names, Standings
from arena.web.cache import StandingsCache

EPSILONS = [2, 4, 8, 16]


def synthesize(attacks: int, defenses: int, images: int, seed: int = 0) -> tuple[Standings, ImageOutcomes]:
    """Every defense answers every attack's output on every image at every eps: an error with a
    probability set by the attack's strength, the defense's robustness, eps and the image's
    difficulty; the counts summed as the queries would (per image and per cell)."""
    rng = np.random.default_rng(seed)
    attack_ids = np.arange(1, attacks + 1)
    defense_ids = np.arange(attacks + 1, attacks + defenses + 1)
    strength, robustness = rng.normal(0, 1, attacks), rng.normal(0, 1, defenses)
    difficulty = rng.normal(0, 1, images).astype(np.float32)
    targeted = rng.random(attacks) < 0.2
    shape = (attacks, len(EPSILONS), images)
    answered = np.full((defenses, len(EPSILONS), images), attacks, dtype=np.int64)
    errors, breakers = np.zeros_like(answered), np.zeros_like(answered)
    attack_errors, attack_hits = np.zeros(shape, dtype=np.int64), np.zeros(shape, dtype=np.int64)
    cells = []
    for d in range(defenses):
        logit = (strength[:, None, None] - robustness[d] + np.log2(EPSILONS)[None, :, None] - 3
                 + difficulty[None, None, :])
        error = rng.random(shape, dtype=np.float32) < 1 / (1 + np.exp(-logit))
        hit = error & targeted[:, None, None] & (rng.random(shape, dtype=np.float32) < 0.5)
        errors[d], breakers[d] = error.sum(axis=0), (error * attack_ids[:, None, None]).sum(axis=0)
        attack_errors += error
        attack_hits += hit
        for e, eps in enumerate(EPSILONS):
            for a in range(attacks):
                cells.append((attack_ids[a], defense_ids[d], eps, images, error[a, e].sum(), hit[a, e].sum()))
    clean_correct = rng.random((defenses, images)) < 0.9
    outcomes = ImageOutcomes(np.arange(images), EPSILONS, defense_ids, attack_ids, attack_ids, answered, errors,
                             breakers, np.ones((defenses, images), dtype=bool), clean_correct,
                             np.full(shape, defenses, dtype=np.int64), attack_errors, attack_hits)
    frame = pd.DataFrame(cells, columns=CELL_COLUMNS).astype("int64")
    frame["correct"] = frame["scored"] - frame["error"]
    kinds = ["targeted_attack" if t else "attack" for t in targeted] + ["defense"] * defenses
    names = Names(pd.DataFrame({"submission": [f"s{i}" for i in np.r_[attack_ids, defense_ids]], "team": "t",
                                "kind": kinds}, index=pd.Index(np.r_[attack_ids, defense_ids], name="id")))
    clean = pd.Series(clean_correct.mean(axis=1), index=defense_ids, name="clean_accuracy")
    return Standings(frame, clean, names, EPSILONS), outcomes


def point_figures(standings: Standings) -> list[pd.DataFrame]:
    return [standings.defense_leaderboard(), standings.attack_leaderboard(), standings.targeted_attack_leaderboard()]


def database(attacks: int, defenses: int, images: int, rounds: int) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from web import fabricate, land  # noqa: PLC0415 (the web bench's tournament writer)

    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(data_dir=Path(folder))
        upgrade(settings)
        start = time.perf_counter()
        answers, held_back, held_rows = fabricate(settings, attacks, defenses, images)
        landing = [(held_back, held_rows), *_hold_back(settings, rounds - 1)]
        print(f"\nwrote {answers:,} answers into SQLite in {time.perf_counter() - start:.0f} s")
        times = {"baseline: Standings.compute (the tallies)": [], "ImageOutcomes.load (every answer, per image)": [],
                 "Standings.compute + Leaderboards.load (a cache refresh reading everything)": []}

        def load(session, dataset) -> None:
            ImageOutcomes.load(session, dataset, Standings.compute(session, dataset).names)

        def both(session, dataset) -> None:
            Leaderboards.load(session, dataset, Standings.compute(session, dataset))

        for _ in range(rounds):
            for name, work in zip(times, (Standings.compute, load, both)):
                with transaction(settings) as session:
                    dataset = session.get(Dataset, 1)
                    times[name].append(_timed(lambda: work(session, dataset)))  # noqa: B023 (called at once)
        cache = StandingsCache(settings, recheck_seconds=0)
        cache.get(None)
        refreshes = []
        for job, rows in landing:  # one defense job lands, then the next request refreshes
            land(settings, job, rows)
            refreshes.append(_timed(lambda: cache.get(None)))
        times["a cache refresh after one defense job landed (its answers added)"] = refreshes
        baseline = statistics.median(times[next(iter(times))])
        print(f"\n{attacks} x {defenses} x {images} images x {len(EPSILONS)} eps in SQLite, median of {rounds}\n")
        print("| measure | median | ratio to the baseline |\n|---|---|---|")
        for name, values in times.items():
            print(f"| {name} | {statistics.median(values):.2f} s | {statistics.median(values) / baseline:.1f} |")


def _hold_back(settings: Settings, count: int) -> list[tuple[dict, list[dict]]]:
    """Take the answers of ``count`` more defense jobs out (pending again, tallies recounted),
    to land them one by one."""
    held = []
    with transaction(settings) as session:
        for job in session.scalars(select(DefenseJob).where(DefenseJob.attack_job_id.is_not(None)).limit(count)):
            rows = [{column: getattr(c, column) for column in ("defense_job_id", "defense_id", "image_id",
                                                               "adversarial_image_id", "label")}
                    for c in session.scalars(select(Classification).where(Classification.defense_job_id == job.id))]
            session.execute(delete(Classification).where(Classification.defense_job_id == job.id))
            job.status = JobStatus.PENDING
            held.append(({"id": job.id, "submission_id": job.submission_id}, rows))
        tallies.rebuild(session)
    return held


def _timed(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attacks", type=int, default=100)
    parser.add_argument("--defenses", type=int, default=100)
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--database", type=int, metavar="IMAGES", help="also time the queries on a SQLite tournament")
    args = parser.parse_args()
    start = time.perf_counter()
    standings, outcomes = synthesize(args.attacks, args.defenses, args.images)
    print(f"synthesized {args.attacks} x {args.defenses} x {args.images} images x {len(EPSILONS)} eps "
          f"({args.attacks * args.defenses * args.images * len(EPSILONS):,} answers) in {time.perf_counter() - start:.1f} s")

    weights_cold = []
    for _ in range(args.rounds):
        resampling_weights.cache_clear()
        weights_cold.append(_timed(lambda: resampling_weights(args.images)))
    measures = {
        "baseline: the three boards' point figures (Standings, tallies)": lambda: point_figures(standings),
        "Leaderboards.compute: + intervals, worst case, unique, beats_next": lambda: Leaderboards.compute(standings, outcomes),
        "  of which robust_accuracy (worst case, its intervals)": lambda: robust_accuracy(outcomes, standings.names, EPSILONS),
        "  of which unique_contributions": lambda: unique_contributions(outcomes, standings.names, EPSILONS),
    }
    matrix = standings.matrix("error", 8), standings.matrix("error")
    answered_8 = matrix[0] + standings.matrix("correct", 8)
    answered_all = matrix[1] + standings.matrix("correct")
    matrices = {
        "baseline: the error matrix at eps=8 (counts, answers)": lambda: (standings.matrix("error", 8),
                                                                         standings.matrix("correct", 8)),
        "+ every cell's interval at eps=8 (n = images)": lambda: binomial_interval(matrix[0].to_numpy(),
                                                                                 answered_8.to_numpy()),
        "+ every cell's interval over all eps (n = 4 x images)": lambda: binomial_interval(matrix[1].to_numpy(),
                                                                                         answered_all.to_numpy()),
    }
    times = {name: [] for name in [*measures, *matrices]}
    for _ in range(args.rounds):
        for group in (measures, matrices):
            for name, work in group.items():
                times[name].append(_timed(work))
    baseline = statistics.median(times[next(iter(measures))])
    matrix_baseline = statistics.median(times[next(iter(matrices))])
    print(f"\n{intervals.REPLICATES} resamples; median of {args.rounds} rounds\n")
    print("| measure | median | ratio to its baseline |\n|---|---|---|")
    print(f"| resampling weights ({intervals.REPLICATES} x {args.images}), first use (cached after) | "
          f"{statistics.median(weights_cold):.3f} s | |")
    for name in times:
        base = baseline if name in measures else matrix_baseline
        median = statistics.median(times[name])
        print(f"| {name} | {median:.3f} s | {median / base:.1f} |")
    if args.database:
        database(args.attacks, args.defenses, args.database, args.rounds)


if __name__ == "__main__":
    main()
