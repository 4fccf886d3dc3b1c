"""The platform's own work per adversarial image, with the store's PNG level before (6,
Pillow's default) and after (1) the change, in one invocation: read the attack's output,
check it, clip it, encode it canonically, hash and store it (what ``attack_run._collect``
does for every image), on the synthetic dataset's images with ±eps noise, as the demo's
random_noise attack makes them.

    .venv/bin/python bench/hot_paths.py [--images 200]
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from arena.data.dataset import synthetic_pixels
from arena.data.images import ImageStore, clip_to_epsilon, encode_png, linf, read_png


def work(store: ImageStore, clean: list[np.ndarray], outputs: list[bytes], level: int) -> float:
    started = time.perf_counter()
    for pixels, data in zip(clean, outputs):
        adversarial = read_png(data)
        kept, _ = clip_to_epsilon(pixels, adversarial, 8)
        linf(pixels, kept)
        store.put_pixels(kept, level)
    return (time.perf_counter() - started) / len(clean)


def main(images: int) -> None:
    rng = np.random.default_rng(0)
    clean = [synthetic_pixels(int(rng.integers(1, 1001)), rng) for _ in range(images)]
    outputs = [encode_png(np.clip(c.astype(int) + rng.choice([-8, 8], c.shape), 0, 255).astype(np.uint8)) for c in clean]
    with tempfile.TemporaryDirectory() as scratch:
        timings = {}
        for round_ in range(2):  # alternate, keep the second round
            for level in (6, 1):
                timings[level] = work(ImageStore(Path(scratch) / f"{round_}-{level}"), clean, outputs, level)
    print(f"{images} images, platform work per adversarial image")
    print(f"PNG level 6 (before): {timings[6] * 1000:.1f} ms")
    print(f"PNG level 1 (after):  {timings[1] * 1000:.1f} ms")
    print(f"ratio after / before: {timings[1] / timings[6]:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    main(parser.parse_args().images)
