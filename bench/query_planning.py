"""What a planning turn of the query track pays to rank the query attacks (``query_pairs.attack_order``).

With a top K, each turn of ``arena run`` ranks the query attacks by their AVC score so far.
The ranking needs the medians only; the boards also bootstrap an interval around each. This
measures ``attack_scores`` on a synthetic round at the 2017 size under top K (100 query
attacks, each against the K best served defenses, on the first images), with and without
the intervals, alternating within one invocation, and prints the medians and their ratio.

    .venv/bin/python bench/query_planning.py [--attacks 100] [--top-k 10] [--images 100] [--rounds 5]
"""

import argparse
import statistics
import time

import numpy as np
import pandas as pd

from arena.results.query_scoring import COLUMNS, attack_scores

EPSILONS = [2, 4, 8, 16]


def synthetic(attacks: int, defenses: int, images: int, seed: int = 0) -> pd.DataFrame:
    """One result row per (attack, defense, image), as ``results_frame`` gives them: about
    half the outputs adversarial, at L2 distances of a few units."""
    rng = np.random.default_rng(seed)
    n = attacks * defenses * images
    fooled = rng.random(n) < 0.5
    true = rng.integers(1, 1001, n)
    rows = pd.DataFrame({
        "attack": np.repeat([f"a{i}" for i in range(attacks)], defenses * images),
        "attack_kind": "query_attack",
        "defense": np.tile(np.repeat([f"d{i}" for i in range(defenses)], images), attacks),
        "image": np.tile([f"i{i}" for i in range(images)], attacks * defenses),
        "true_label": true, "target_class": 1, "queries": rng.integers(1, 1000, n), "refused": 0,
        "linf": 8, "l2": rng.gamma(2.0, 2.0, n), "missing": False,
        "label": np.where(fooled, (true % 1000) + 1, true),
    })
    rows["labels_at"] = [{str(e): None for e in EPSILONS}] * n
    return rows[COLUMNS]


def _seconds(frame: pd.DataFrame, intervals: bool) -> float:
    start = time.perf_counter()
    attack_scores(frame, EPSILONS, intervals=intervals)
    return time.perf_counter() - start


def main(attacks: int, top_k: int, images: int, rounds: int) -> None:
    frame = synthetic(attacks, top_k, images)
    with_intervals, ranking = [], []
    for _ in range(rounds):
        with_intervals.append(_seconds(frame, True))
        ranking.append(_seconds(frame, False))
    full, fast = statistics.median(with_intervals), statistics.median(ranking)
    print(f"{attacks} query attacks x {top_k} defenses x {images} images = {len(frame):,} results; medians of {rounds}")
    print("| ranking with the boards' intervals | ranking alone (the planner's) | ratio |")
    print("|---|---|---|")
    print(f"| {full:.3f} s | {fast:.3f} s | {fast / full:.3f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--attacks", type=int, default=100)
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    arguments = parser.parse_args()
    main(arguments.attacks, arguments.top_k, arguments.images, arguments.rounds)
