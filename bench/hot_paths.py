"""The platform's own work per adversarial image, before and now, in one invocation: what
``attack_run.collect`` does for each output between the container's exit and the database
(read the clean image and the output, decode, check, clip, encode when needed, hash, store).

"now" is ``attack_run.collect`` itself, on a real stage; "before" is the pipeline it
replaced, written out below as it was (the output converted to RGB whatever its mode,
clipped in int16, always encoded at zlib level 1, hashed, then written). Two kinds of
output, as an attack's Pillow writes them (zlib level 6): photos with +-eps noise (an
honest attack: nothing to clip, the file kept as submitted), and with +-2 eps noise
(clipped, so encoded). Photos are imagenet-sample-1000's when ../shared/datasets holds
it (and --synthetic is not given), else the synthetic dataset's images, flat cells that
decode and compress far faster than photos (the figure of before, 13.2 ms, was measured on
them, without the clean image's decode). Rounds alternate; the best round is kept.

    .venv/bin/python bench/hot_paths.py [--images 200] [--rounds 3] [--synthetic]
"""

import argparse
import hashlib
import io
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from arena import REPO_ROOT
from arena.config import Settings
from arena.data.dataset import synthetic_pixels
from arena.data.images import ImageStore, center_crop_resize, encode_png
from arena.sandbox.attack_run import CleanInput, collect
from arena.sandbox.staging import staging

PHOTOS = REPO_ROOT.parent / "shared" / "datasets" / "imagenet-sample-1000" / "images"
EPSILON = 8
#: Input names of runs outside any round: any key will do (a round has its own).
NAMING_KEY = bytes(32)


def clean_images(count: int, rng: np.random.Generator, synthetic: bool = False) -> tuple[list[np.ndarray], str]:
    if PHOTOS.is_dir() and not synthetic:
        paths = sorted(PHOTOS.iterdir())[:count]
        return [center_crop_resize(PILImage.open(path)) for path in paths], f"{len(paths)} imagenet-sample-1000 photos"
    return [synthetic_pixels(int(rng.integers(1, 1001)), rng) for _ in range(count)], f"{count} synthetic images"


def attack_png(pixels: np.ndarray, noise: int, rng: np.random.Generator) -> bytes:
    """What an attack writes: +-noise on every value, saved by Pillow with its defaults."""
    moved = np.clip(pixels.astype(np.int16) + rng.choice([-noise, noise], pixels.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    PILImage.fromarray(moved).save(buffer, format="PNG")
    return buffer.getvalue()


def before(clean_store: ImageStore, store: ImageStore, clean_sha256: str, data: bytes, epsilon: int) -> None:
    """The pipeline of before, per image, as ``attack_run`` and ``data.images`` had it."""
    with PILImage.open(io.BytesIO(clean_store.path(clean_sha256).read_bytes())) as image:
        clean = np.asarray(image, dtype=np.uint8)
    with PILImage.open(io.BytesIO(data)) as image:
        output = np.asarray(image.convert("RGB"), dtype=np.uint8)
    low = np.clip(clean.astype(np.int16) - epsilon, 0, 255)
    high = np.clip(clean.astype(np.int16) + epsilon, 0, 255)
    kept = np.clip(output, low, high).astype(np.uint8)
    bool(np.any(kept != output))
    buffer = io.BytesIO()
    PILImage.fromarray(kept, "RGB").save(buffer, format="PNG", compress_level=1)
    png = buffer.getvalue()
    digest = hashlib.sha256(png).hexdigest()
    target = store.path(digest)
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as handle:
            handle.write(png)
        os.chmod(handle.name, 0o644)
        os.replace(handle.name, target)
    int(np.max(np.abs(clean.astype(np.int16) - kept.astype(np.int16))))


def timed_before(clean_store: ImageStore, root: Path, sha256s: list[str], outputs: list[bytes]) -> float:
    """The pipeline of before over the same outputs, read from files as ``collect`` reads them."""
    folder, store = root / "outputs", ImageStore(root / "store")
    folder.mkdir(parents=True)
    for i, data in enumerate(outputs):
        (folder / f"{i}.png").write_bytes(data)
    started = time.perf_counter()
    for i, sha256 in enumerate(sha256s):
        before(clean_store, store, sha256, (folder / f"{i}.png").read_bytes(), EPSILON)
    seconds = time.perf_counter() - started
    shutil.rmtree(root)
    return seconds / len(outputs)


def timed_now(settings: Settings, sha256s: list[str], outputs: list[bytes]) -> float:
    """``collect`` over a stage whose output folder holds ``outputs`` (staging not timed)."""
    store = ImageStore(settings.store_dir)
    inputs = [CleanInput(i, sha256, 1, str(i)) for i, sha256 in enumerate(sha256s)]
    with staging(settings, NAMING_KEY) as stage:
        for item, data in zip(inputs, outputs):
            (stage.output / stage.add_image(store, item.sha256, item.name, item.image_id)).write_bytes(data)
        started = time.perf_counter()
        results, problems = collect(stage, store, inputs, EPSILON)
        seconds = time.perf_counter() - started
    assert not problems and not any(r.missing for r in results) and all(r.linf <= EPSILON for r in results)
    return seconds / len(outputs)


def timed_clean_decode(store: ImageStore, sha256s: list[str]) -> float:
    """The part of both sides that reads the clean image (the figure of before left it out)."""
    started = time.perf_counter()
    for sha256 in sha256s:
        store.read_pixels(sha256)
    return (time.perf_counter() - started) / len(sha256s)


def main(images: int, rounds: int, synthetic: bool) -> None:
    rng = np.random.default_rng(0)
    clean, source = clean_images(images, rng, synthetic)
    kinds = {"within eps (kept as submitted)": EPSILON, "beyond eps (clipped, encoded)": 2 * EPSILON}
    outputs = {kind: [attack_png(pixels, noise, rng) for pixels in clean] for kind, noise in kinds.items()}
    best: dict = {}
    with tempfile.TemporaryDirectory() as scratch:
        settings = Settings(data_dir=Path(scratch) / "data")
        clean_store = ImageStore(settings.store_dir)
        sha256s = [clean_store.put(encode_png(pixels)) for pixels in clean]
        for _ in range(rounds):
            for kind, pngs in outputs.items():
                # every output is stored anew on each side: "before" into a store of its own,
                # "now" into the clean images' store, emptied of the outputs after each run
                best[kind, "before"] = min(best.get((kind, "before"), float("inf")),
                                           timed_before(clean_store, Path(scratch) / "before", sha256s, pngs))
                best[kind, "now"] = min(best.get((kind, "now"), float("inf")), timed_now(settings, sha256s, pngs))
                _remove_outputs(clean_store, sha256s)
                best["clean"] = min(best.get("clean", float("inf")), timed_clean_decode(clean_store, sha256s))
    print(f"{source}, eps {EPSILON}, best of {rounds} alternating rounds: platform work per adversarial image")
    print(f"{'output':34} {'before':>9} {'now':>9} {'now / before':>13}   without the clean image's decode")
    for kind in kinds:
        old, new, clean_decode = best[kind, "before"], best[kind, "now"], best["clean"]
        print(f"{kind:34} {old * 1000:7.2f} ms {new * 1000:7.2f} ms {new / old:13.2f}   "
              f"{(old - clean_decode) * 1000:.2f} ms -> {(new - clean_decode) * 1000:.2f} ms")
    print(f"the clean image's decode, in both: {best['clean'] * 1000:.2f} ms")


def _remove_outputs(store: ImageStore, keep: list[str]) -> None:
    """Empties the store of all but the clean images, so the next round stores every output anew."""
    kept = {store.path(sha256) for sha256 in keep}
    for path in store.root.rglob("*.png"):
        if path not in kept:
            path.unlink()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--synthetic", action="store_true", help="the synthetic dataset's images, not photos")
    args = parser.parse_args()
    main(args.images, args.rounds, args.synthetic)
