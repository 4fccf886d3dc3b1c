"""One defense over one batch of images, clean or adversarial: stage, run sandboxed, parse."""

from collections.abc import Iterator
from dataclasses import dataclass, field

from arena.config import Settings
from arena.data.images import image_store
from arena.sandbox import containers
from arena.sandbox.code import SubmissionCode
from arena.sandbox.result_csv import Answer, parse_result_csv
from arena.sandbox.staging import Staging, staging


@dataclass(frozen=True)
class DefenseInput:
    """``key`` is the caller's handle for the image; ``name`` the name in the dataset of the
    clean image it is, or was made from (with its content, what its opaque input name is
    made of: ``staging.input_name``)."""

    key: int
    sha256: str
    name: str


@dataclass
class DefenseOutcome:
    run: containers.RunResult
    answers: dict[int, Answer]  # by DefenseInput.key
    problems: list[str] = field(default_factory=list)  # what the team should fix
    notes: list[str] = field(default_factory=list)  # what was accepted as 2017 accepted it


def _outcome(stage: Staging, run: containers.RunResult) -> DefenseOutcome:
    parsed = parse_result_csv(stage.output / "result.csv", list(stage.names))
    answers = {stage.names[name]: answer for name, answer in parsed.answers.items()}
    if not run.succeeded:
        parsed.problems.insert(0, f"the defense {run.describe()}")
    return DefenseOutcome(run, answers, parsed.problems, parsed.notes)


def _stage(stage: Staging, settings: Settings, inputs: list[DefenseInput]) -> None:
    store = image_store(settings)
    for item in inputs:
        stage.add_image(store, item.sha256, item.name, item.key)


def execute_defense(settings: Settings, code: SubmissionCode, inputs: list[DefenseInput],
                    naming_key: bytes) -> DefenseOutcome:
    """Run the defense on ``inputs``, named under ``naming_key`` (its round's), and return one
    answer per input (no database involved)."""
    with staging(settings, naming_key) as stage:
        _stage(stage, settings, inputs)
        return _outcome(stage, stage.run(settings, code, "/output_data", "/output_data/result.csv"))


def repeated_defense(settings: Settings, code: SubmissionCode, inputs: list[DefenseInput], naming_key: bytes,
                     runs: int) -> Iterator[DefenseOutcome]:
    """``execute_defense``'s outcome, then as the caller asks (up to ``runs`` in all) the outcome
    of the same run again, on the same inputs under the same names, in one container where
    the image allows (``Staging.passes``): the determinism probe's runs."""
    with staging(settings, naming_key) as stage:
        _stage(stage, settings, inputs)
        with stage.passes(settings, code, "/output_data", runs) as run:
            for _ in range(runs):
                yield _outcome(stage, run("/output_data/result.csv"))
