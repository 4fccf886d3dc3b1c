"""Writing results in the 2017 competition's file names, plus every per-image answer as Parquet."""

from pathlib import Path

from sqlalchemy.orm import Session

from arena.models import Dataset
from arena.results.judging import MatrixValue
from arena.results.plots import epsilon_curves, heatmap
from arena.results.scoring import Names, Standings, load_results

#: The 2017 file names of the three matrices.
MATRICES = {"accuracy_matrix": MatrixValue.CORRECT, "error_matrix": MatrixValue.ERROR,
            "hit_target_class_matrix": MatrixValue.HIT}


def export(session: Session, dataset: Dataset, directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    standings = Standings.compute(session, dataset)
    written = []
    for stem, value in MATRICES.items():
        written.append(_csv(standings.matrix(value), directory / f"{stem}.csv", index=True))
        for eps in standings.epsilons:
            written.append(_csv(standings.matrix(value, eps), directory / f"{stem}_eps{eps}.csv", index=True))
    written.append(_csv(standings.defense_leaderboard(), directory / "defense_results.csv"))
    written.append(_csv(standings.attack_leaderboard(), directory / "attack_results.csv"))
    written.append(_csv(standings.targeted_attack_leaderboard(), directory / "targeted_attack_results.csv"))
    written.append(_per_image(load_results(session, dataset), standings.names, directory / "classifications.parquet"))
    if not standings.empty:
        written.append(heatmap(standings.error_rate_matrix(), directory / "error_matrix.png", "Misclassified (%), all eps"))
        written.append(epsilon_curves(standings.defense_error_by_epsilon(), directory / "defense_error_by_eps.png",
                                      "Each defense against all attacks"))
    return written


def _csv(frame, path: Path, index: bool = False) -> Path:
    frame.to_csv(path, index=index)
    return path


def _per_image(results, names: Names, path: Path) -> Path:
    names = names.frame["submission"]
    frame = results.assign(defense=results["defense_id"].map(names), attack=results["attack_id"].map(names))
    frame["label"] = frame["label"].astype("Int64")
    frame.to_parquet(path, index=False)
    return path
