"""Add +eps or -eps to every pixel at random: the 2017 "random noise" baseline.

The noise is seeded by the image's content and eps, not its file name (the platform
renames inputs on every run), so the attack is deterministic.
"""

import hashlib
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def perturb(pixels: np.ndarray, png: bytes, eps: int) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(png + str(eps).encode()).digest()[:8], "big")
    signs = np.random.default_rng(seed).choice(np.array([-1, 1], dtype=np.int16), size=pixels.shape)
    return np.clip(pixels.astype(np.int16) + eps * signs, 0, 255).astype(np.uint8)


def main(input_dir: str, output_dir: str, eps: str) -> None:
    for path in sorted(Path(input_dir).glob("*.png")):
        png = path.read_bytes()
        pixels = np.asarray(Image.open(path).convert("RGB"))
        Image.fromarray(perturb(pixels, png, int(eps))).save(Path(output_dir) / path.name)


if __name__ == "__main__":
    main(*sys.argv[1:4])
