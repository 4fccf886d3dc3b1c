"""A decision-based boundary attack (Brendel, Rauber and Bethge, 2018), NumPy only: it sees
the defense's top-1 labels alone, through Arena's query channel.

Untargeted: start from uniform noise the defense labels differently from the clean image,
walk back along the line to the boundary (a binary search), then alternate a random step
orthogonal to the direction of the clean image with a step towards it, keeping each
candidate that is still adversarial, and adapting both step sizes to how often they are.
Every query is a uint8 image, so the adversarial returned is exactly one the defense saw.
Seeded by the image's content: the same run gives the same output everywhere.
"""

import hashlib
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from query_client import Oracle, Refused


class Search:
    """One image's boundary walk: ``best`` is the closest adversarial found so far."""

    def __init__(self, oracle: Oracle, clean: np.ndarray, label: int, rng: np.random.Generator) -> None:
        self.oracle, self.clean, self.label, self.rng = oracle, clean.astype(np.float64), label, rng
        self.best: np.ndarray | None = None

    def adversarial(self, candidate: np.ndarray) -> bool:
        image = np.clip(np.rint(candidate), 0, 255).astype(np.uint8)
        if self.oracle.label(image) == self.label:
            return False
        if self.best is None or self.distance(image) < self.distance(self.best):
            self.best = image
        return True

    def distance(self, image: np.ndarray) -> float:
        return float(np.linalg.norm(image.astype(np.float64) - self.clean))

    def start(self, tries: int = 10) -> bool:
        for _ in range(tries):
            if self.adversarial(self.rng.uniform(0, 255, self.clean.shape)):
                return True
        return False

    def to_boundary(self, steps: int = 10) -> None:
        """Binary search on the segment from the clean image to the best adversarial."""
        low, high, far = 0.0, 1.0, self.best.astype(np.float64)
        for _ in range(steps):
            middle = (low + high) / 2
            if self.adversarial(self.clean + middle * (far - self.clean)):
                high = middle
            else:
                low = middle

    def walk(self, budget: int) -> None:
        spherical, towards = 0.05, 0.05
        while self.oracle.used < budget:
            current = self.best.astype(np.float64)
            difference = current - self.clean
            norm = np.linalg.norm(difference)
            step = self.rng.normal(size=self.clean.shape)
            step -= np.vdot(step, difference) / norm**2 * difference  # orthogonal to the direction of the clean image
            step *= spherical * norm / np.linalg.norm(step)
            candidate = self.clean + (current + step - self.clean) * norm / np.linalg.norm(current + step - self.clean)
            if self.adversarial(candidate):
                spherical *= 1.5
                if self.oracle.used < budget:
                    towards *= 1.5 if self.adversarial(candidate + towards * (self.clean - candidate)) else 1 / 1.5
            else:
                spherical /= 1.5
            spherical, towards = min(max(spherical, 1e-3), 0.5), min(max(towards, 1e-3), 0.5)


def attack(path: Path, budget: int) -> np.ndarray:
    clean = np.asarray(Image.open(path).convert("RGB"))
    seed = int.from_bytes(hashlib.sha256(clean.tobytes()).digest()[:8], "little")
    oracle = Oracle(path.name)
    search = Search(oracle, clean, oracle.label(clean), np.random.default_rng(seed))
    try:
        if search.start():
            search.to_boundary()
            search.walk(budget)
    except Refused as exc:  # the budget is spent: keep the best found
        print(f"{path.name}: {exc}", file=sys.stderr)
    print(f"{path.name}: {oracle.used} queries, "
          f"{'L2 %.1f' % search.distance(search.best) if search.best is not None else 'no adversarial'}", file=sys.stderr)
    return clean if search.best is None else search.best


def main(input_dir: str, output_dir: str, budget: str) -> None:
    for path in sorted(Path(input_dir).glob("*.png")):
        Image.fromarray(attack(path, int(budget))).save(Path(output_dir) / path.name)


if __name__ == "__main__":
    main(*sys.argv[1:4])
