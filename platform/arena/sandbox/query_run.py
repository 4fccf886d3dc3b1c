"""One query-track attack against one served defense over one batch: stage, serve the
defense, run the attack with the query channel, then score its outputs with the defense.

The attack runs as ``./ENTRY /input_images /output_images BUDGET`` (targeted: with
``target_class.csv`` in the inputs, as in 2017), its stdin and stdout the query channel
(``query_channel``). Whatever the attack or the defense does, every clean image leaves
with one result: the output as returned (the clean image when missing or unreadable), its
L-infinity and L2 distances, the queries it cost, and the defense's labels for it as
returned and clipped to each epsilon of the round. Those scoring labels are Arena's own
questions to the defense, counted against no budget, asked once the attack has exited.
No database involved.
"""

import hashlib
import time
from dataclasses import dataclass, field

import numpy as np

from arena.config import Settings
from arena.data.images import (
    ImageStore,
    clip_to_epsilon,
    encode_png,
    image_store,
    l2,
    linf,
)
from arena.sandbox import containers
from arena.sandbox.attached import attached
from arena.sandbox.attack_run import AttackOutcome, CleanInput, collect, notes, read_output, stage_inputs
from arena.sandbox.code import SubmissionCode
from arena.sandbox.query_channel import Classifier, QueryChannel, QueryCount
from arena.sandbox.serving import DefenseFailed, RawImage, ServedDefense, served
from arena.sandbox.staging import Staging, staging

#: How long an attack that closed its stdout has to exit before it is killed.
EXIT_GRACE_SECONDS = 5.0
#: The dry run's queries per image (``execute_query_dry_run``).
DRY_RUN_BUDGET = 10
#: An epsilon that clips nothing: a dry run's outputs are stored as returned.
UNCLIPPED = 255


@dataclass
class QueryImageResult:
    image_id: int
    sha256: str  # the output as returned, stored; the clean image's when missing
    linf: int
    l2: float
    queries: int
    refused: int
    missing: bool
    label: int | None  # the defense's label for the output; None: it did not answer
    labels_at: dict[int, int | None]  # by epsilon, for the output clipped to it


@dataclass
class QueryOutcome:
    attack_run: containers.RunResult
    defense_failure: str | None
    defense_log: str  # the served defense's stderr's tail
    results: list[QueryImageResult]
    problems: list[str] = field(default_factory=list)  # the attack's, for its team
    #: The served defense's whole stderr (``AttachedContainer.log``), for ``data/logs.py`` to keep.
    defense_full_log: bytes | None = None


@dataclass(frozen=True)
class QueryTask:
    """What one query job asks: the attack's and the defense's code, the images, the round's rules."""

    attack: SubmissionCode
    defense: SubmissionCode
    inputs: list[CleanInput]
    epsilons: list[int]
    budget: int
    seconds_per_image: float  # the round's: the served defense's time per queried image
    naming_key: bytes


def _scoring_labels(defense: ServedDefense, variants: list[np.ndarray]) -> list[int | None]:
    """The defense's labels for the output and its clipped variants, in one query; None each
    when the defense has failed (a missing label counts as misclassified, as in 2017)."""
    try:
        return list(defense.classify([np.ascontiguousarray(v, dtype=np.uint8).tobytes() for v in variants]))
    except DefenseFailed:
        return [None] * len(variants)


def _score(stage: Staging, store: ImageStore, task: QueryTask, defense: ServedDefense,
           counts: dict[str, QueryCount], problems: list[str]) -> list[QueryImageResult]:
    by_id = {item.image_id: item for item in task.inputs}
    results = []
    for name, image_id in stage.names.items():
        clean_sha256 = by_id[image_id].sha256
        clean = store.read_pixels(clean_sha256)
        read = read_output(stage, name, problems)
        missing = read is None
        kept = clean if missing else read[1].pixels
        variants = [kept] + [clip_to_epsilon(clean, kept, epsilon)[0] for epsilon in task.epsilons]
        label, *clipped = _scoring_labels(defense, variants)
        results.append(QueryImageResult(
            image_id, clean_sha256 if missing else store.put(encode_png(kept)), linf(clean, kept), l2(clean, kept),
            counts[name].answered, counts[name].refused, missing, label, dict(zip(task.epsilons, clipped)),
        ))
    missing = sum(r.missing for r in results)
    if missing:
        problems.insert(0, f"{missing} of {len(results)} outputs missing or unreadable: scored as the clean image")
    return results


def _run_attack(settings: Settings, stage: Staging, code: SubmissionCode, budget: int, time_limit: float,
                classify: Classifier) -> tuple[containers.RunResult, QueryChannel]:
    """Run the attack with its query channel to ``classify``; its outputs land in ``stage.output``."""
    containers.check_room(stage.output, settings.sandbox)
    stage.output.chmod(0o777)  # the non-root user inside must be able to write here
    mounts = [containers.Mount(code.root, "/code"), containers.Mount(stage.input, "/input_images"),
              containers.Mount(stage.output, "/output_images", writable=True)]
    command = code.command("/input_images", "/output_images", str(budget))
    with attached(code.image(gpu=settings.sandbox.gpu), command, mounts, time_limit, settings.sandbox,
                  settings.work_dir) as attack:
        channel = QueryChannel(attack, classify, list(stage.names), budget)
        kill_reason = channel.serve(lambda: containers.over_limit(stage.output, settings.sandbox))
        # an attack whose channel Arena closed may still write its outputs, up to its deadline;
        # one that closed its stdout itself has exited, or is about to
        run = attack.finish(attack.deadline if channel.closed_because else time.monotonic() + EXIT_GRACE_SECONDS,
                            kill_reason)
    return run, channel


def _described(run: containers.RunResult, channel: QueryChannel, problems: list[str]) -> list[str]:
    if channel.closed_because:
        problems.insert(0, f"the query channel closed: {channel.closed_because}")
    if not run.succeeded:
        problems.insert(0, f"the attack {run.describe()}")
    return problems


def time_limit(settings: Settings, task: QueryTask) -> float:
    """How long the served defense may live: its start, the attack's time (its queries'
    answers included), then the scoring labels; the longest a query job runs (its lease's
    heartbeat stops renewing past it)."""
    return settings.serving_start_seconds + settings.query_seconds_per_image * len(task.inputs) \
        + task.seconds_per_image * len(task.inputs) * (1 + len(task.epsilons))


def execute_query_attack(settings: Settings, task: QueryTask) -> QueryOutcome:
    """Run ``task``'s attack against its served defense and return one result per input."""
    store = image_store(settings)
    with staging(settings, task.naming_key) as stage, \
            served(settings, task.defense, time_limit(settings, task), task.seconds_per_image) as defense:
        stage_inputs(stage, store, task.inputs, targeted=task.attack.kind.is_targeted)
        run, channel = _run_attack(settings, stage, task.attack, task.budget,
                                   settings.query_seconds_per_image * len(task.inputs), defense.classify)
        problems: list[str] = []
        results = _score(stage, store, task, defense, channel.counts, problems)
        defense_log, defense_full_log = defense.stream.log_tail(), defense.stream.log()
    return QueryOutcome(run, defense.failure, defense_log, results, _described(run, channel, problems), defense_full_log)


def stand_in_labels(images: list[RawImage]) -> list[int]:
    """The dry run's stand-in for a defense: a label made from each image's hash, so that the
    same query gets the same answer and a changed image, most likely, another."""
    return [1 + int.from_bytes(hashlib.sha256(image).digest()[:4], "little") % 1000 for image in images]


def execute_query_dry_run(settings: Settings, code: SubmissionCode, inputs: list[CleanInput],
                          naming_key: bytes) -> AttackOutcome:
    """Run a query-track attack as its dry run: ``DRY_RUN_BUDGET`` queries per image answered
    by ``stand_in_labels`` under the round's batch time limit, its outputs checked and
    stored as a batch attack's are (unclipped). It shows the attack speaks the protocol,
    writes its outputs and keeps to the time, not how strong it is."""
    store = image_store(settings)
    with staging(settings, naming_key) as stage:
        stage_inputs(stage, store, inputs, targeted=code.kind.is_targeted)
        run, channel = _run_attack(settings, stage, code, DRY_RUN_BUDGET, settings.time_limit(len(inputs)),
                                   stand_in_labels)
        results, problems = collect(stage, store, inputs, UNCLIPPED)
    return AttackOutcome(run, results, _described(run, channel, problems), notes(results))
