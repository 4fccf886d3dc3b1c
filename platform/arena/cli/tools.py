"""``arena demo`` and ``arena study``: whole tournaments from nothing."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from arena import db
from arena.cli.common import app, console, database, run_with_progress, settings
from arena.cli.results import leaderboard
from arena.data.dataset import find_dataset


@app.command()
def demo(
    images: Annotated[int, typer.Option(help="Synthetic images (batches of 100).")] = 200,
) -> None:
    """The whole tournament on synthetic data: base images, dataset, sample submissions, run, leaderboards."""
    from arena.tools.demo import (
        run_demo,  # kept apart: the demo is a script over the commands above
    )

    run_demo(settings(), images, console, run_with_progress)
    leaderboard(None, every=True)


@app.command()
def study(
    images: Annotated[int, typer.Option(help="Real photos to import (spread over the classes).", min=1)] = 160,
    photos: Annotated[Optional[Path], typer.Option(help="The imagenet-sample-1000 folder.")] = None,
    defense: Annotated[Optional[list[Path]], typer.Option(
        help="An extra defense submission folder (repeatable), e.g. one that loads adversarially trained weights.")] = None,
    report: Annotated[Path, typer.Option(help="Where to write the report (plots go beside it).")] = Path("docs/study.md"),
) -> None:
    """The real-model study: EfficientNet-Lite attacks and defenses, with and without a median
    filter, on real ImageNet photos at every eps; writes a report with plots. Resumable."""
    from arena.tools.study import DEFAULT_PHOTOS, run_study
    from arena.tools.study_report import write_report

    name = run_study(settings(), images, photos or DEFAULT_PHOTOS, console, run_with_progress, tuple(defense or ()))
    with db.transaction(database()) as session:
        written = write_report(session, find_dataset(session, name), report)
    console.print(f"report written: {', '.join(str(p) for p in written)}")
