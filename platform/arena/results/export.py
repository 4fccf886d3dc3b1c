"""Writing results in the 2017 competition's file names, plus every per-image answer as Parquet
and the manifest of what produced them (each submission's code hash and pinned images)."""

from pathlib import Path

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from arena.models import Batch, Dataset, JobAttempt, JobKind, Submission, SubmissionStatus, Team
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
    written.append(_csv(manifest(session, dataset), directory / "submissions.csv"))
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
    """One row per accepted submission: what ran, to check the results against (its code's tree
    hash, the images its tags were pinned to, the images its runs recorded) and its determinism flag."""
    ran = _images_run(session, dataset)
    rows = [{
        "id": s.id, "submission": s.name, "team": team, "kind": s.kind.value, "code_sha256": s.sha256,
        "container": s.meta.get("container"), "container_image": s.container_image,
        "container_gpu": s.meta.get("container_gpu"), "container_gpu_image": s.container_gpu_image,
        "images_run": ran.get(s.id), "nondeterministic_share": s.nondeterministic_share,
    } for s, team in session.execute(
        select(Submission, Team.name).join(Team).where(Submission.status == SubmissionStatus.ACCEPTED).order_by(Submission.id)
    )]
    return pd.DataFrame(rows, columns=["id", "submission", "team", "kind", "code_sha256", "container", "container_image",
                                       "container_gpu", "container_gpu_image", "images_run", "nondeterministic_share"])
