"""Writing results in the 2017 competition's file names, plus every per-image answer as
Parquet, each defense's worst case (``robust_accuracy.csv``) and each attack's unique
contribution (``unique_contributions.csv``), and the perturbation each attack actually made
(``perturbations.csv``: mean and largest L-infinity and L2 per epsilon).

The leaderboard files carry what the leaderboards show: the 2017 columns, then each
figure's 95% interval (``F_low``, ``F_high``), the worst case or the unique contribution,
and ``beats_next`` (docs/scoring.md)."""

from pathlib import Path

import pandas as pd
from sqlalchemy.orm import Session

from arena.models import Dataset, SubmissionKind
from arena.results.judging import MatrixValue
from arena.results.leaderboards import Leaderboards
from arena.results.perturbations import perturbations
from arena.results.plots import epsilon_curves, heatmap
from arena.results.scoring import Names, Standings, load_results

#: The 2017 file names of the three matrices.
MATRICES = {"accuracy_matrix": MatrixValue.CORRECT, "error_matrix": MatrixValue.ERROR,
            "hit_target_class_matrix": MatrixValue.HIT}


#: Each leaderboard's file: the 2017 name.
LEADERBOARDS = {"defense": "defense_results", "attack": "attack_results", "targeted_attack": "targeted_attack_results"}
#: Beyond 2017: each defense's worst case, each attack's unique contribution (docs/scoring.md).
ROBUSTNESS = {"robust_accuracy": "worst_case", "unique_contributions": "unique"}


def export(session: Session, dataset: Dataset, directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    standings = Standings.compute(session, dataset)
    boards = Leaderboards.load(session, dataset, standings)
    written = []
    for stem, value in MATRICES.items():
        written.append(_csv(standings.matrix(value), directory / f"{stem}.csv", index=True))
        for eps in standings.epsilons:
            written.append(_csv(standings.matrix(value, eps), directory / f"{stem}_eps{eps}.csv", index=True))
    for track, stem in LEADERBOARDS.items():
        written.append(_csv(boards.track(track), directory / f"{stem}.csv"))
    for stem in ROBUSTNESS:
        written.append(_csv(robustness_export(boards, stem), directory / f"{stem}.csv"))
    written.append(_csv(_perturbations(session, dataset, standings.names), directory / "perturbations.csv"))
    written.append(_per_image(load_results(session, dataset), standings.names, directory / "classifications.parquet"))
    if not standings.empty:
        written.append(heatmap(standings.error_rate_matrix(), directory / "error_matrix.png", "Misclassified (%), all eps"))
        written.append(epsilon_curves(standings.defense_error_by_epsilon(), directory / "defense_error_by_eps.png",
                                      "Each defense against all attacks (bands: 95% intervals)",
                                      bands=boards.error_bands()))
    return written


def robustness_export(boards: Leaderboards, stem: str) -> pd.DataFrame:
    """``robust_accuracy`` or ``unique_contributions``, best first."""
    figure = ROBUSTNESS[stem]
    frame = getattr(boards, stem).sort_values([figure, "submission"], ascending=[False, True], na_position="last")
    return frame.reset_index(drop=True)


def _perturbations(session: Session, dataset: Dataset, names: Names) -> pd.DataFrame:
    """Each accepted attack's L-infinity and L2 distances actually used, per epsilon, by name."""
    attacks = names.of_kind(SubmissionKind.ATTACK, SubmissionKind.TARGETED_ATTACK)["submission"]
    frame = perturbations(session, dataset, list(attacks.index))
    frame.insert(0, "attack", frame.pop("attack_id").map(attacks))
    return frame


def _csv(frame, path: Path, index: bool = False) -> Path:
    frame.to_csv(path, index=index)
    return path


def _per_image(results, names: Names, path: Path) -> Path:
    names = names.frame["submission"]
    frame = results.assign(defense=results["defense_id"].map(names), attack=results["attack_id"].map(names))
    frame["label"] = frame["label"].astype("Int64")
    frame.to_parquet(path, index=False)
    return path
