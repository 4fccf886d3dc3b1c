"""A served defense: a defense's serving entry point, running for the length of a query job
and answering label queries over its standard streams (docs/query-track.md, "Defenses").

    Arena -> defense   classify N\\n  then N images, each 299*299*3 bytes (RGB, row-major, uint8)
    defense -> Arena   L1 L2 ... LN\\n  (labels in 1..1000, in the order of the images)

It first loads its model and writes ``ready\\n``. It runs under the sandbox of every other
run: no network, read-only, non-root, memory and pids limits, the round's runtime; it sees
its code at ``/code`` and nothing else. It has ``start_seconds`` to become ready and the
round's ``seconds_per_image`` per image of each query; a defense that exits, hangs, or
answers anything but N valid labels has failed for the rest of the job (``failure`` says
why), and every query after that is refused: a failure is never retried, so a defense that
crashes on some images cannot be asked again until it answers in its favour.
"""

import time
from collections.abc import Iterator
from contextlib import contextmanager

from arena.config import Settings
from arena.data.images import IMAGE_SIZE
from arena.sandbox import containers
from arena.sandbox.attached import AttachedContainer, StreamClosed, attached
from arena.sandbox.code import SubmissionCode

IMAGE_BYTES = IMAGE_SIZE * IMAGE_SIZE * 3
#: One image of a query, raw: bytes, or a view into the query the attack sent (no copy).
RawImage = bytes | memoryview
#: Longest answer line taken: N labels of at most 4 digits and their spaces, with room to spare.
MAX_ANSWER_BYTES = 8 * 1024
READY = b"ready"


class DefenseFailed(Exception):
    """The served defense stopped answering as the protocol says; the message says how."""


class ServedDefense:
    """A running served defense and the one question Arena asks it: labels for images."""

    def __init__(self, stream: AttachedContainer, seconds_per_image: float) -> None:
        self.stream = stream
        self.seconds_per_image = seconds_per_image
        self.failure: str | None = None
        self.answered = 0  # images, scoring queries included

    def wait_ready(self, seconds: float) -> None:
        self._answer(lambda: self._ready(time.monotonic() + seconds))

    def classify(self, images: list[RawImage]) -> list[int]:
        """The defense's labels for ``images`` (raw 299x299x3 bytes each); DefenseFailed when it
        has failed, now or before."""
        return self._answer(lambda: self._ask(images))

    def _answer(self, question):
        if self.failure:
            raise DefenseFailed(self.failure)
        try:
            return question()
        except (StreamClosed, DefenseFailed) as exc:
            self.failure = str(exc)
            raise DefenseFailed(self.failure) from None

    def _ready(self, until: float) -> None:
        line = self._line(until, "ready")
        if line.strip() != READY:
            raise DefenseFailed(f"said {line[:80]!r} where ready was expected")

    def _ask(self, images: list[RawImage]) -> list[int]:
        self.stream.send(b"".join([b"classify %d\n" % len(images), *images]))  # one copy of the images
        line = self._line(time.monotonic() + self.seconds_per_image * len(images), f"labels for {len(images)} image(s)")
        labels = _labels(line, len(images))
        self.answered += len(images)
        return labels

    def _line(self, until: float, what: str) -> bytes:
        try:
            return self.stream.read_line(until, MAX_ANSWER_BYTES)
        except StreamClosed as exc:
            raise DefenseFailed(f"gave no {what}: {exc}") from None


def _labels(line: bytes, expected: int) -> list[int]:
    """``expected`` labels in 1..1000 from one answer line, or DefenseFailed naming what is wrong."""
    words = line.split()
    if len(words) != expected:
        raise DefenseFailed(f"answered {len(words)} label(s) to a query of {expected} image(s): {line[:80]!r}")
    try:
        labels = [int(word) for word in words]
    except ValueError:
        raise DefenseFailed(f"answered something that is not a label: {line[:80]!r}") from None
    if any(not 1 <= label <= 1000 for label in labels):
        raise DefenseFailed(f"answered a label outside 1..1000: {line[:80]!r}")
    return labels


@contextmanager
def served(settings: Settings, code: SubmissionCode, time_limit: float, seconds_per_image: float) -> Iterator[ServedDefense]:
    """The defense served for ``time_limit`` seconds at most, ready (or failed, saying why)."""
    with attached(code.image(gpu=settings.sandbox.gpu), code.serving_command(), [containers.Mount(code.root, "/code")],
                  time_limit, settings.sandbox, settings.work_dir) as stream:
        defense = ServedDefense(stream, seconds_per_image)
        try:
            defense.wait_ready(settings.serving_start_seconds)
        except DefenseFailed:
            pass  # recorded in defense.failure; the attack still runs, and is refused its queries
        yield defense
