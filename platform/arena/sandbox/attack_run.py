"""One attack over one batch at one epsilon: stage, run sandboxed, check, clip, store.

Whatever the attack does, every clean image leaves with exactly one adversarial image:
its output clipped into the epsilon ball (converted and resized as in 2017), or the clean
image itself when the output is missing or unreadable (each case flagged and counted).
"""

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from arena.config import Settings
from arena.data.images import (
    AttackOutput,
    BadImage,
    ImageStore,
    clip_to_epsilon,
    encode_png,
    image_store,
    l2,
    linf,
    read_attack_output,
)
from arena.models import SubmissionKind
from arena.sandbox import containers
from arena.sandbox.code import SubmissionCode
from arena.sandbox.staging import Staging, staging

#: Far above any honest 299x299 PNG (about 270 KB uncompressed); larger files are not read.
MAX_OUTPUT_FILE_BYTES = 4 * 2**20


@dataclass(frozen=True)
class CleanInput:
    """One clean image to attack; ``name`` is its name in the dataset (with its content, what
    its opaque input name is made of: ``staging.input_name``)."""

    image_id: int
    sha256: str
    target_class: int
    name: str


@dataclass
class AdversarialResult:
    image_id: int
    sha256: str
    linf: int
    l2: float  # the Euclidean norm of the kept change, 0-255 scale
    clipped: bool = False
    missing: bool = False
    wrong_size: bool = False  # resized to 299x299, as the 2017 evaluation did
    converted: str | None = None  # the mode and format converted to an RGB PNG, as in 2017


@dataclass
class AttackOutcome:
    run: containers.RunResult
    results: list[AdversarialResult]
    problems: list[str] = field(default_factory=list)  # what the team should fix
    notes: list[str] = field(default_factory=list)  # what was accepted as 2017 accepted it


def stage_inputs(stage: Staging, store: ImageStore, inputs: list[CleanInput], targeted: bool) -> None:
    targets = []
    for item in inputs:
        name = stage.add_image(store, item.sha256, item.name, item.image_id)
        targets.append(f"{name},{item.target_class}\n")
    if targeted:
        (stage.input / "target_class.csv").write_text("".join(targets))


def read_output(stage: Staging, name: str, problems: list[str]) -> tuple[bytes, AttackOutput] | None:
    """The attack's output file for one input, as bytes and decoded as 2017 decoded it; None
    when it is missing, a link, too large or unreadable (the last two said in ``problems``):
    the one reading of an output, for the batch and the query tracks alike."""
    path = stage.output / name
    if path.is_symlink() or not path.is_file():
        return None
    try:
        if path.stat().st_size > MAX_OUTPUT_FILE_BYTES:
            raise BadImage(f"{path.stat().st_size} bytes is far too large for a 299x299 PNG")
        data = path.read_bytes()
        return data, read_attack_output(data)
    except BadImage as exc:
        problems.append(f"{name}: {exc}")
        return None


def _judge(stage: Staging, name: str, clean: np.ndarray, epsilon: int,
           problems: list[str]) -> tuple[np.ndarray, bytes | None, dict]:
    """The pixels to keep for one output, the PNG to store them as (None: the clean image's
    own file), and the flags that say how they were obtained. The output is decoded once;
    its own bytes are stored when it needed no clip and no conversion and holds nothing but
    the image (``plain_png``), so an honest attack's output costs no encoding."""
    read = read_output(stage, name, problems)
    if read is None:
        return clean, None, {"missing": True}
    data, output = read
    kept, moved = clip_to_epsilon(clean, output.pixels, epsilon)
    png = data if output.plain and not moved else encode_png(kept)
    return kept, png, {"clipped": moved, "converted": output.converted_from, "wrong_size": output.resized_from is not None}


def collect(stage: Staging, store: ImageStore, inputs: list[CleanInput], epsilon: int) -> tuple[list[AdversarialResult], list[str]]:
    problems: list[str] = []
    by_id = {item.image_id: item for item in inputs}
    results = []
    for name, image_id in stage.names.items():
        clean_sha256 = by_id[image_id].sha256
        clean = store.read_pixels(clean_sha256)
        kept, png, flags = _judge(stage, name, clean, epsilon, problems)
        stored = clean_sha256 if png is None else store.put(png)
        results.append(AdversarialResult(image_id, stored, linf(clean, kept), l2(clean, kept), **flags))
    missing = sum(r.missing for r in results)
    if missing:
        problems.insert(0, f"{missing} of {len(results)} outputs missing or unreadable: replaced by the clean image")
    return results, problems


def notes(results: list[AdversarialResult]) -> list[str]:
    """What was converted as the 2017 evaluation converted it: said, but not held against the run."""
    notes = []
    converted = Counter(r.converted for r in results if r.converted)
    if converted:
        kinds = ", ".join(f"{count} {kind}" for kind, count in sorted(converted.items()))
        notes.append(f"{sum(converted.values())} output(s) converted to RGB PNG as in 2017 ({kinds})")
    resized = sum(r.wrong_size for r in results)
    if resized:
        notes.append(f"{resized} output(s) of the wrong size resized to 299x299 (bicubic) as in 2017")
    return notes


def _outcome(stage: Staging, store: ImageStore, inputs: list[CleanInput], epsilon: int,
             run: containers.RunResult) -> AttackOutcome:
    results, problems = collect(stage, store, inputs, epsilon)
    if not run.succeeded:
        problems.insert(0, f"the attack {run.describe()}")
    return AttackOutcome(run, results, problems, notes(results))


def execute_attack(settings: Settings, code: SubmissionCode, inputs: list[CleanInput], epsilon: int,
                   naming_key: bytes) -> AttackOutcome:
    """Run the attack on ``inputs``, named under ``naming_key`` (its round's), and return one
    result per input (no database involved)."""
    store = image_store(settings)
    with staging(settings, naming_key) as stage:
        stage_inputs(stage, store, inputs, targeted=code.kind is SubmissionKind.TARGETED_ATTACK)
        run = stage.run(settings, code, "/output_images", "/output_images", str(epsilon))
        return _outcome(stage, store, inputs, epsilon, run)


def repeated_attack(settings: Settings, code: SubmissionCode, inputs: list[CleanInput], epsilon: int,
                    naming_key: bytes, runs: int) -> Iterator[AttackOutcome]:
    """``execute_attack``'s outcome, then as the caller asks (up to ``runs`` in all) the outcome
    of the same run again, on the same inputs under the same names, in one container where
    the image allows (``Staging.passes``): the determinism probe's runs."""
    store = image_store(settings)
    with staging(settings, naming_key) as stage:
        stage_inputs(stage, store, inputs, targeted=code.kind is SubmissionKind.TARGETED_ATTACK)
        with stage.passes(settings, code, "/output_images", runs) as run:
            for _ in range(runs):
                yield _outcome(stage, store, inputs, epsilon, run("/output_images", str(epsilon)))
