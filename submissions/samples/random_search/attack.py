"""Random search, NumPy only: the simplest decision-based attack. For each image, try
random +-eps sign noise at growing eps (batches of candidates, one query each batch) and
return the first candidate the defense labels wrongly (or, targeted, as the target class:
``target_class.csv`` in the input folder). Seeded by the image's content.
"""

import hashlib
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from query_client import Oracle, Refused

EPSILONS = (2, 4, 8, 16, 32, 64)
BATCH = 4


def targets(input_dir: Path) -> dict[str, int]:
    path = input_dir / "target_class.csv"
    if not path.is_file():
        return {}
    return {name: int(label) for name, label in (line.split(",") for line in path.read_text().split())}


def attack(path: Path, budget: int, target: int | None) -> np.ndarray:
    clean = np.asarray(Image.open(path).convert("RGB"))
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(clean.tobytes()).digest()[:8], "little"))
    oracle = Oracle(path.name)
    try:
        label = oracle.label(clean)
        for eps in EPSILONS:
            if oracle.used + BATCH > budget:
                break
            signs = rng.choice(np.array([-1, 1], np.int16), size=(BATCH, *clean.shape))
            candidates = np.clip(clean.astype(np.int16) + eps * signs, 0, 255).astype(np.uint8)
            for candidate, answer in zip(candidates, oracle.labels(list(candidates))):
                if (answer == target) if target else (answer != label):
                    print(f"{path.name}: adversarial at eps {eps} after {oracle.used} queries", file=sys.stderr)
                    return candidate
    except Refused as exc:
        print(f"{path.name}: {exc}", file=sys.stderr)
    print(f"{path.name}: nothing found in {oracle.used} queries", file=sys.stderr)
    return clean


def main(input_dir: str, output_dir: str, budget: str) -> None:
    wanted = targets(Path(input_dir))
    for path in sorted(Path(input_dir).glob("*.png")):
        Image.fromarray(attack(path, int(budget), wanted.get(path.name))).save(Path(output_dir) / path.name)


if __name__ == "__main__":
    main(*sys.argv[1:4])
