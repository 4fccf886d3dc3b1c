"""A white-box targeted attack on Arena's synthetic images.

It knows how the class is written (ten cells, one bit each, see dataset/README.md) and
moves every cell whose bit differs from TargetClass's by eps toward the other side of
128. A cell flips only when its margin is below eps, so hits grow with eps.
"""

import sys
from pathlib import Path

import numpy as np
from PIL import Image

SIZE, ROWS, COLUMNS, BITS = 299, 2, 5, 10


def cells():
    rows = np.linspace(0, SIZE, ROWS + 1).astype(int)
    columns = np.linspace(0, SIZE, COLUMNS + 1).astype(int)
    for bit in range(BITS):
        r, c = divmod(bit, COLUMNS)
        yield bit, slice(rows[r], rows[r + 1]), slice(columns[c], columns[c + 1])


def step(pixels: np.ndarray, target: int, eps: int) -> np.ndarray:
    out = pixels.astype(np.int16)
    for bit, rows, columns in cells():
        direction = 1 if (target >> bit) & 1 else -1
        out[rows, columns] += direction * eps
    return np.clip(out, 0, 255).astype(np.uint8)


def main(input_dir: str, output_dir: str, eps: str) -> None:
    targets = {}
    for line in (Path(input_dir) / "target_class.csv").read_text().splitlines():
        name, label = line.split(",")
        targets[name] = int(label)
    for name, target in sorted(targets.items()):
        pixels = np.asarray(Image.open(Path(input_dir) / name).convert("RGB"))
        Image.fromarray(step(pixels, target, int(eps))).save(Path(output_dir) / name)


if __name__ == "__main__":
    main(*sys.argv[1:4])
