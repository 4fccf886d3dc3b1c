"""The broker between a query-track attack and a served defense: reads each query from the
attack's stdout, checks it, counts it against its image's budget, has the defense label it
and writes the answer to the attack's stdin (docs/query-track.md, "The protocol").

    attack -> Arena   query NAME N\\n  then N images, each 299*299*3 bytes (RGB, row-major, uint8)
    Arena -> attack   labels L1 ... LN\\n
                      refused REASON\\n   (nothing counted; the attack may go on)
                      closed REASON\\n    (a header Arena cannot read: no more answers)

NAME is one of the attack's input file names: the N images count against that image's
budget. A query that would pass the budget is refused whole, saying how many are left. An
attack that writes anything else on stdout (a header that does not parse, a line longer than
``MAX_HEADER_BYTES``) loses the channel, as its stream can no longer be read as queries;
its outputs are scored all the same. Labels only: nothing but the top-1 label goes back.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass

from arena.sandbox.attached import AttachedContainer, Silent, StreamClosed
from arena.sandbox.serving import IMAGE_BYTES, DefenseFailed, RawImage

MAX_HEADER_BYTES = 256
#: Most images in one query: a batch of candidates for one image, bounded so that the
#: broker never holds more than ~27 MB of one query.
MAX_BATCH = 100
#: How often the broker looks up from a silent attack to check its output's limits.
WATCH_SECONDS = 0.5

Classifier = Callable[[list[RawImage]], list[int]]


class ProtocolViolation(Exception):
    """The attack wrote something on stdout that is not a query: the channel closes."""


@dataclass
class QueryCount:
    """What one image's queries cost: ``answered`` counts against the budget, ``refused`` never."""

    answered: int = 0
    refused: int = 0


class QueryChannel:
    """Carries one attack's queries to one classifier (a served defense, or a stand-in), per-image budgets kept."""

    def __init__(self, attack: AttachedContainer, classify: Classifier, names: list[str], budget: int) -> None:
        self.attack = attack
        self.classify = classify
        self.budget = budget
        self.counts = {name: QueryCount() for name in names}
        self.closed_because: str | None = None  # the protocol violation that closed the channel

    def serve(self, watch: Callable[[], str | None] = lambda: None) -> str | None:
        """Answer queries until the attack closes its stdout or its deadline passes; ``watch``
        is asked between queries and whenever the attack is silent, and a reason it returns
        (an output past the limits) ends the channel and is returned: the attack is to be killed."""
        while time.monotonic() < self.attack.deadline:
            try:
                self._answer(self._header())
            except Silent:
                pass
            except ProtocolViolation as exc:
                self.closed_because = str(exc)
                self._reply(f"closed {exc}")
                return None
            except StreamClosed:
                return None
            if reason := watch():
                return reason
        return None

    def _header(self) -> tuple[str, int]:
        line = self.attack.read_line(time.monotonic() + WATCH_SECONDS, MAX_HEADER_BYTES)
        words = line.split()
        if len(words) != 3 or words[0] != b"query" or not words[2].isdigit():
            raise ProtocolViolation(f"malformed query header {line[:80]!r}: expected 'query NAME N'")
        return words[1].decode("ascii", errors="replace"), int(words[2])

    def _answer(self, header: tuple[str, int]) -> None:
        name, size = header
        if not 1 <= size <= MAX_BATCH:
            raise ProtocolViolation(f"a query of {size} images: N must lie in 1..{MAX_BATCH}")
        payload = memoryview(self.attack.read_exact(size * IMAGE_BYTES, self.attack.deadline))
        self._reply(self._labels(name, [payload[i * IMAGE_BYTES:(i + 1) * IMAGE_BYTES] for i in range(size)]))  # no copies

    def _labels(self, name: str, images: list[RawImage]) -> str:
        """The answer to one well-framed query: its labels, or why it is refused."""
        count = self.counts.get(name)
        if count is None:
            return f"refused unknown image {name[:80]}: queries name one of the input files"
        left = self.budget - count.answered
        if len(images) > left:
            count.refused += len(images)
            return f"refused budget: {len(images)} queries asked, {left} of {self.budget} left for {name}"
        try:
            labels = self.classify(images)
        except DefenseFailed:  # why is the defense's record, never the attack's to read: labels only
            return "refused defense failed: no query will be answered"
        count.answered += len(images)
        return "labels " + " ".join(map(str, labels))

    def _reply(self, line: str) -> None:
        try:
            self.attack.send(line.encode() + b"\n")
        except StreamClosed:
            pass  # the attack has gone; what it wrote before is still scored
