"""Add +eps or -eps to every pixel at random: the 2017 "random noise" baseline.

The signs come from SHAKE-256 of the image's content and eps, not from its file name
(the platform renames inputs on every run) nor from a NumPy generator (whose streams may
change between versions), so the attack gives the same output on any machine.
"""

import hashlib
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def perturb(pixels: np.ndarray, png: bytes, eps: int) -> np.ndarray:
    bits = np.unpackbits(np.frombuffer(hashlib.shake_256(png + str(eps).encode()).digest((pixels.size + 7) // 8), np.uint8))
    signs = bits[: pixels.size].reshape(pixels.shape).astype(np.int16) * 2 - 1
    return np.clip(pixels.astype(np.int16) + eps * signs, 0, 255).astype(np.uint8)


def main(input_dir: str, output_dir: str, eps: str) -> None:
    for path in sorted(Path(input_dir).glob("*.png")):
        png = path.read_bytes()
        pixels = np.asarray(Image.open(path).convert("RGB"))
        Image.fromarray(perturb(pixels, png, int(eps))).save(Path(output_dir) / path.name)


if __name__ == "__main__":
    main(*sys.argv[1:4])
