"""The decoder, served: answers the query track's label queries on stdin/stdout
(docs/query-track.md): `classify N` and N raw 299x299x3 images in, N labels out."""

import sys

import numpy as np
from defense import SIZE, classify

IMAGE_BYTES = SIZE * SIZE * 3


def main() -> None:
    queries, answers = sys.stdin.buffer, sys.stdout.buffer
    answers.write(b"ready\n")
    answers.flush()
    while header := queries.readline():
        count = int(header.split()[1])
        images = np.frombuffer(queries.read(count * IMAGE_BYTES), np.uint8).reshape(count, SIZE, SIZE, 3)
        answers.write((" ".join(str(classify(image)) for image in images) + "\n").encode())
        answers.flush()


if __name__ == "__main__":
    main()
