"""Writing results in the 2017 competition's file names, plus every per-image answer as
Parquet, each defense's worst case (``robust_accuracy.csv``) and each attack's unique
contribution (``unique_contributions.csv``), the perturbation each attack actually made
(``perturbations.csv``: mean and largest L-infinity and L2 per epsilon), and what produced
them (``submissions.csv``: each submission's code hash and pinned images); and, where the
round ran the query track, its cells and matrices (``query_scoring.export``).

The leaderboard files carry what the leaderboards show: the 2017 columns, then each
figure's 95% interval (``F_low``, ``F_high``), the worst case or the unique contribution,
and ``beats_next`` (docs/scoring.md). Every accepted entry of the dataset's round is in them."""

from pathlib import Path

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from arena.competition import entries, rounds
from arena.models import Batch, Dataset, JobAttempt, JobKind, Submission, SubmissionKind, Team
from arena.results import csv_files, query_scoring
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
        written.append(_csv(leaderboard_file(boards.track(track)), directory / f"{stem}.csv"))
    for stem in ROBUSTNESS:
        written.append(_csv(robustness_export(boards, stem), directory / f"{stem}.csv"))
    written.append(_csv(_perturbations(session, dataset, standings.names), directory / "perturbations.csv"))
    written.append(_per_image(load_results(session, dataset), standings.names, directory / "classifications.parquet"))
    written.append(_csv(manifest(session, dataset), directory / "submissions.csv"))
    if not standings.empty:
        written.append(heatmap(standings.error_rate_matrix(), directory / "error_matrix.png", "Misclassified (%), all eps"))
        written.append(epsilon_curves(standings.defense_error_by_epsilon(), directory / "defense_error_by_eps.png",
                                      "Each defense against all attacks (bands: 95% intervals)",
                                      bands=boards.error_bands()))
    round_ = rounds.of_dataset(session, dataset.id)
    if round_ is not None:
        written += query_scoring.export(session, round_, directory)
    return written


def leaderboard_file(board: pd.DataFrame) -> pd.DataFrame:
    """A leaderboard as its CSV file has it: ``baseline`` says "yes" on a baseline's row and
    nothing on the others (a column of ``False`` tells a reader nothing)."""
    return board.assign(baseline=board["baseline"].map({True: "yes", False: ""}))


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
    csv_files.write(frame, path, index)
    return path


#: The per-image file's row order: a function of the results alone, not of the order the
#: database hands rows back in (on PostgreSQL, of where each row happens to lie on disk), so
#: that the same results give the same bytes on any installation (a restored one included).
PER_IMAGE_ORDER = ["defense_id", "attack_id", "epsilon", "image_id"]


def _per_image(results, names: Names, path: Path) -> Path:
    names = names.frame["submission"]
    results = results.sort_values(PER_IMAGE_ORDER, ignore_index=True)
    frame = results.assign(defense=results["defense_id"].map(names), attack=results["attack_id"].map(names))
    frame["label"] = frame["label"].astype("Int64")
    frame.to_parquet(path, index=False)
    return path


def _images_run(session: Session, dataset: Dataset) -> dict[int, str]:
    """The image ids the attempts of each submission's jobs on the dataset recorded, joined by
    ``;`` (one, unless the results were made before pinning or a tag was followed by hand)."""
    ran: dict[int, set[str]] = {}
    for kind in JobKind:
        job = kind.job_class
        rows = session.execute(
            select(job.submission_id, JobAttempt.container_image).distinct()
            .join(JobAttempt, kind.attempt_column == job.id).join(Batch, job.batch_id == Batch.id)
            .where(Batch.dataset_id == dataset.id, JobAttempt.container_image.is_not(None))
        )
        for submission_id, image in rows:
            ran.setdefault(submission_id, set()).add(image)
    return {submission_id: ";".join(sorted(images)) for submission_id, images in ran.items()}


def manifest(session: Session, dataset: Dataset) -> pd.DataFrame:
    """One row per accepted entry of the round: what ran, to check the results against (its
    code's tree hash, the images its tags were pinned to, the images its runs recorded) and its
    determinism flag."""
    ran = _images_run(session, dataset)
    entered = entries.accepted(session, dataset.id)
    rows = [{
        "id": s.id, "submission": s.name, "team": team, "kind": s.kind.value, "code_sha256": s.sha256,
        "container": s.meta.get("container"), "container_image": s.container_image,
        "container_gpu": s.meta.get("container_gpu"), "container_gpu_image": s.container_gpu_image,
        "images_run": ran.get(s.id), "nondeterministic_share": s.nondeterministic_share,
    } for s, team in session.execute(
        select(Submission, Team.name).join(Team).where(Submission.id.in_(entered)).order_by(Submission.id)
    )]
    return pd.DataFrame(rows, columns=["id", "submission", "team", "kind", "code_sha256", "container", "container_image",
                                       "container_gpu", "container_gpu_image", "images_run", "nondeterministic_share"])
