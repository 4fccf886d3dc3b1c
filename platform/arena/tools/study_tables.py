"""The real-model study's figures, computed from the stored per-image answers: rates with
their intervals, the median filter's paired effect (McNemar's exact test), white-box marks,
targeted hits, and what each attack spent of its time limit.

The study's submissions are known by name: which models each attacker holds and whether it
attacks through the filter is what makes a cell white-box, transfer or adaptive, as the
source document's Tables 1 and 2 mark their cells. Defenses entered with ``arena study
--defense`` are not in that list: they are shown as transfer cells of their own."""

from dataclasses import dataclass

import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from arena.competition import rounds
from arena.models import AttackJob, Batch, Dataset, DefenseJob, JobAttempt
from arena.results.intervals import binomial_interval
from arena.results.scoring import Names
from arena.results.significance import mcnemar_exact


@dataclass(frozen=True)
class Attacker:
    models: frozenset[str]
    method: str
    gradients: int  # gradient computations per image: steps x EOT samples
    through_filter: bool = False


@dataclass(frozen=True)
class Defender:
    models: frozenset[str]
    filtered: bool


LITE = ("lite0", "lite1", "lite2")
ATTACKERS = {
    "fgsm": Attacker(frozenset({"lite0"}), "FGSM, one step", 1),
    "ifgsm": Attacker(frozenset({"lite0"}), "MI-FGSM, 10 steps, random start", 10),
    "smoothed_ifgsm": Attacker(frozenset({"lite0"}), "MI-FGSM on a 9x9-blurred gradient, 10 steps", 10),
    "targeted_ifgsm": Attacker(frozenset({"lite0"}), "targeted MI-FGSM, 10 steps", 10),
    "ensemble_ifgsm": Attacker(frozenset({"lite0", "lite1"}), "MI-FGSM, 10 steps (Lite2 held out)", 10),
    "all_models_ifgsm": Attacker(frozenset(LITE), "MI-FGSM, 10 steps", 10),
    "bpda_ifgsm": Attacker(frozenset(LITE), "MI-FGSM through the median, BPDA, 10 steps", 10, True),
    "eot_ifgsm": Attacker(frozenset(LITE), "BPDA + EOT over 2 one-pixel shifts, 5 steps", 10, True),
}
ATTACK_ORDER = list(ATTACKERS)
DEFENDERS = {
    **{name: Defender(frozenset({name}), False) for name in LITE},
    "ensemble": Defender(frozenset(LITE), False),
    **{f"median_{name}": Defender(frozenset({name}), True) for name in LITE},
    "median_ensemble": Defender(frozenset(LITE), True),
}
#: Each unfiltered defense and the same models behind the 3x3 median filter.
FILTER_PAIRS = {name: f"median_{name}" for name in [*LITE, "ensemble"]}
TRANSFER_ATTACK, HELD_OUT = "ensemble_ifgsm", "lite2"
#: The analog of the source document's `**`: an attacker holding every defended model.
FULL_ATTACK = "all_models_ifgsm"
ADAPTIVE = ["bpda_ifgsm", "eot_ifgsm"]
#: The source document's Table 3, its best ensemble against `**`: (without, with) filtering, %.
SOURCE_TABLE_3 = {2: (91.875, 10.625), 4: (96.875, 17.5), 8: (98.125, 27.5), 16: (99.375, 43.125)}


def access(attack: str, defense: str) -> str:
    """What the attacker knows of the defense: "adaptive" (its models and its filter),
    "white-box" (all its models), "partial" (some), or "" (a transfer attack)."""
    attacker, defender = ATTACKERS.get(attack), DEFENDERS.get(defense)
    if attacker is None or defender is None or not attacker.models & defender.models:
        return ""
    if defender.models <= attacker.models:
        return "adaptive" if defender.filtered and attacker.through_filter else "white-box"
    return "partial"


def defense_order(names: list[str]) -> list[str]:
    """The study's defenses in their fixed order, then any extra ones by name."""
    return [d for d in DEFENDERS if d in names] + sorted(set(names) - set(DEFENDERS))


def attack_order(names: list[str]) -> list[str]:
    return [a for a in ATTACK_ORDER if a in names] + sorted(set(names) - set(ATTACKERS))


def named(results: pd.DataFrame, names: Names) -> pd.DataFrame:
    """The per-image answers with the attack's and the defense's names beside their ids."""
    submission = names.frame["submission"]
    return results.assign(attack=results["attack_id"].map(submission), defense=results["defense_id"].map(submission))


def with_interval(rate: float, low: float, high: float) -> str:
    return f"{rate:.1f} ({low:.1f}–{high:.1f})"


def rates(frame: pd.DataFrame, column: str = "error") -> pd.DataFrame:
    """The share (%) of ``column`` by attack, defense and epsilon, with its 95% interval: the
    bootstrap over the cell's photos (``intervals.binomial_interval``, as the matrix cells)."""
    cells = frame.groupby(["attack", "defense", "epsilon"])[column].agg(["sum", "count"])
    low, high = binomial_interval(cells["sum"].to_numpy(), cells["count"].to_numpy())
    table = pd.DataFrame({"rate": 100 * cells["sum"] / cells["count"], "low": 100 * low, "high": 100 * high},
                         index=cells.index).reset_index()
    table["shown"] = [with_interval(r, lo, hi) for r, lo, hi in zip(table["rate"], table["low"], table["high"])]
    return table


@dataclass(frozen=True)
class Change:
    """One paired comparison on the same photos: ``second`` minus ``first`` in points, the
    photos only the first misclassified and only the second, and McNemar's exact p."""

    first: float
    second: float
    only_first: int
    only_second: int
    p: float

    @property
    def points(self) -> float:
        return self.second - self.first

    def shown(self) -> str:
        return f"{self.points:+.1f} (p {self.p:.2g})"


def paired(frame: pd.DataFrame, epsilon: int, first: tuple[str, str], second: tuple[str, str]) -> Change | None:
    """Compare two (attack, defense) cells at ``epsilon`` photo by photo; None where either is missing."""
    at = frame[frame["epsilon"] == epsilon]
    errors = []
    for attack, defense in (first, second):
        cell = at[(at["attack"] == attack) & (at["defense"] == defense)]
        errors.append(cell.set_index("image_id")["error"])
    if errors[0].empty or errors[1].empty:
        return None
    a, b = errors[0].align(errors[1], join="inner")
    only_first, only_second = int((a & ~b).sum()), int((~a & b).sum())
    return Change(100 * a.mean(), 100 * b.mean(), only_first, only_second, mcnemar_exact(only_first, only_second))


def filter_effects(frame: pd.DataFrame, epsilon: int, attacks: list[str]) -> pd.DataFrame:
    """For each model (rows) and attack (columns): the filter's change in points and its p."""
    rows = {}
    for plain, filtered in FILTER_PAIRS.items():
        changes = {a: paired(frame, epsilon, (a, plain), (a, filtered)) for a in attacks}
        if any(changes.values()):
            rows[plain] = {a: c.shown() if c else "" for a, c in changes.items()}
    table = pd.DataFrame.from_dict(rows, orient="index", columns=attacks)
    table.index.name = "model"
    return table


def target_hits(frame: pd.DataFrame) -> pd.DataFrame:
    """How often the targeted attack reached its target class (%), by defense and epsilon."""
    targeted = frame[frame["attack"].map(lambda a: a.startswith("targeted"))]
    if targeted.empty:
        return pd.DataFrame()
    hits = rates(targeted, "hit")
    table = hits.pivot(index="defense", columns="epsilon", values="shown")
    table.columns = [f"eps {e}" for e in table.columns]
    table.index.name = "defense"
    return table.reindex(defense_order(list(table.index)))


def attack_budgets(session: Session, dataset: Dataset, names: Names) -> pd.DataFrame:
    """Each attack's container time per 100 photos, model loading included, over every run it
    made in the study, and that time's share of the round's limit."""
    query = (
        select(AttackJob.submission_id, JobAttempt.run_id, JobAttempt.id, JobAttempt.seconds, JobAttempt.images)
        .join(JobAttempt, JobAttempt.attack_job_id == AttackJob.id)
        .join(Batch, AttackJob.batch_id == Batch.id)
        .where(Batch.dataset_id == dataset.id, JobAttempt.seconds.is_not(None), JobAttempt.images > 0)
    )
    attempts = pd.DataFrame(session.execute(query).all(), columns=["attack_id", "run", "attempt", "seconds", "images"])
    attempts["run"] = attempts["run"].fillna(attempts["attempt"])
    runs = attempts.drop_duplicates(["attack_id", "run"])  # a packed run's jobs share one container
    totals = runs.groupby("attack_id")[["seconds", "images"]].sum()
    round_ = rounds.of_dataset(session, dataset.id)
    limit = 100 * round_.seconds_per_image if round_ else float("nan")
    per_100 = 100 * totals["seconds"] / totals["images"]
    table = pd.DataFrame({
        "attack": totals.index.map(names.frame["submission"]),
        "seconds per 100 photos": per_100.round(1).to_numpy(),
        "of the limit": [f"{100 * s / limit:.0f}% of {limit:.0f} s" for s in per_100],
    })
    table["models held"] = table["attack"].map(lambda a: ", ".join(sorted(ATTACKERS[a].models)) if a in ATTACKERS else "")
    table["method"] = table["attack"].map(lambda a: ATTACKERS[a].method if a in ATTACKERS else "")
    table = table.set_index("attack").reindex(attack_order(list(table["attack"])))
    return table[["models held", "method", "seconds per 100 photos", "of the limit"]]


def study_minutes(session: Session, dataset: Dataset) -> float:
    """From the dataset's import to the last defense run's end: intake with its dry runs and
    the whole tournament (the base images' build before it is not counted)."""
    last = session.scalar(
        select(func.max(JobAttempt.ended_at))
        .join(DefenseJob, JobAttempt.defense_job_id == DefenseJob.id)
        .join(Batch, DefenseJob.batch_id == Batch.id)
        .where(Batch.dataset_id == dataset.id)
    )
    if last is None:
        return float("nan")
    started = dataset.created_at
    if (started.tzinfo is None) != (last.tzinfo is None):  # SQLite hands back naive UTC
        started, last = started.replace(tzinfo=None), last.replace(tzinfo=None)
    return (last - started).total_seconds() / 60
