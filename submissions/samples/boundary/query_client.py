"""The query track's protocol, attack side (docs/query-track.md): ask Arena for the
served defense's labels over stdin/stdout. Log to stderr: stdout is the channel."""

import os
import sys

import numpy as np


def send(data: bytes) -> None:
    """Write all of ``data`` to stdout, however many writes it takes: under gVisor a write to
    the channel may take only part (64 KiB, say), and Python's buffered stdout has been seen
    to drop the rest, so the channel is written with plain writes, in a loop."""
    view = memoryview(data)
    while view:
        view = view[os.write(1, view):]


class Refused(Exception):
    """Arena refused the query (the budget is spent, say); the message says why."""


class Oracle:
    """Labels for images of one input file, counted against that file's budget."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.used = 0

    def labels(self, images: list[np.ndarray]) -> list[int]:
        send(f"query {self.name} {len(images)}\n".encode()
             + b"".join(np.ascontiguousarray(image, dtype=np.uint8).tobytes() for image in images))
        answer = sys.stdin.buffer.readline().decode().split()
        if not answer or answer[0] != "labels":
            raise Refused(" ".join(answer[1:]) or "the channel closed")
        self.used += len(images)
        return [int(label) for label in answer[1:]]

    def label(self, image: np.ndarray) -> int:
        return self.labels([image])[0]
