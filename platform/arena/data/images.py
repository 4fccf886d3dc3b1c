"""Pixels: reading PNGs safely, the epsilon clip, content hashes, and the image store.

Every image the platform keeps, clean or adversarial, is a 299x299 RGB PNG stored under
its sha256, so identical outputs cost one file and a duplicate write is harmless.
"""

import hashlib
import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

IMAGE_SIZE = 299
#: Twice the pixels of a valid image: anything larger is refused before it is decoded,
#: so a decompression bomb costs nothing.
MAX_PIXELS = 2 * IMAGE_SIZE * IMAGE_SIZE


class BadImage(ValueError):
    """A file that is not a readable PNG; the message says why."""


class WrongShape(BadImage):
    """A readable PNG of the wrong size or mode, where only a 299x299 RGB PNG will do (datasets)."""


#: What an attack may write, as the 2017 evaluation read it (Pillow, then ``.convert("RGB")``):
#: PNG in any mode or depth, and JPEG data under the .png name. Other formats Pillow knows
#: are refused: each is one more decoder run on untrusted bytes in the platform's process.
OUTPUT_FORMATS = ("PNG", "JPEG")


@dataclass(frozen=True)
class AttackOutput:
    """An attack's output as scored: 299x299 RGB pixels, and what was done to get them."""

    pixels: np.ndarray
    converted_from: str | None = None  # e.g. "RGBA PNG", "JPEG": converted to RGB as in 2017
    resized_from: tuple[int, int] | None = None  # width, height: resized (bicubic) as in 2017


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


#: zlib level for stored PNGs. Encoding dominated the platform's own CPU time per image at
#: Pillow's default (6); level 1 is about 5x faster on noisy adversarial images for files
#: about 20% larger (docs/benchmarks.md, bench/hot_paths.py).
PNG_LEVEL = 1


def encode_png(pixels: np.ndarray, level: int = PNG_LEVEL) -> bytes:
    """The store's one canonical encoding: equal pixels give equal bytes, hence equal hashes."""
    buffer = io.BytesIO()
    PILImage.fromarray(pixels, "RGB").save(buffer, format="PNG", compress_level=level)
    return buffer.getvalue()


def read_png(data: bytes, *, require_size: bool = True) -> np.ndarray:
    """Decode an attack output or dataset PNG into uint8 HxWx3; raise BadImage saying why not."""
    try:
        with PILImage.open(io.BytesIO(data)) as image:
            if image.format != "PNG":
                raise BadImage(f"not a PNG but {image.format}")
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise BadImage(f"{width}x{height} pixels is far larger than {IMAGE_SIZE}x{IMAGE_SIZE}")
            if require_size and (width, height) != (IMAGE_SIZE, IMAGE_SIZE):
                raise WrongShape(f"size {width}x{height}, expected {IMAGE_SIZE}x{IMAGE_SIZE}")
            if image.mode != "RGB":
                raise WrongShape(f"mode {image.mode}, expected RGB")
            return np.asarray(image, dtype=np.uint8)
    except BadImage:
        raise
    except Exception as exc:  # Pillow raises many types for corrupt data
        raise BadImage(f"corrupt image ({exc.__class__.__name__}: {exc})") from None


def read_attack_output(data: bytes) -> AttackOutput:
    """Decode an attack's output the way the 2017 evaluation did (``eval_lib/dataset_helper.py``,
    ``enforce_epsilon_and_compute_hash``): any PNG or JPEG Pillow reads is converted to RGB,
    and one of another size is resized to 299x299 with bicubic interpolation; both are
    recorded. Raise BadImage for anything else, or for far too many pixels (a bomb)."""
    try:
        with PILImage.open(io.BytesIO(data)) as image:
            if image.format not in OUTPUT_FORMATS:
                raise BadImage(f"not a PNG but {image.format}")
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise BadImage(f"{width}x{height} pixels is far larger than {IMAGE_SIZE}x{IMAGE_SIZE}")
            converted = None if (image.format, image.mode) == ("PNG", "RGB") else f"{image.mode} {image.format}"
            rgb = image.convert("RGB")
            resized = None
            if (width, height) != (IMAGE_SIZE, IMAGE_SIZE):
                rgb, resized = rgb.resize((IMAGE_SIZE, IMAGE_SIZE), PILImage.Resampling.BICUBIC), (width, height)
            return AttackOutput(np.asarray(rgb, dtype=np.uint8), converted, resized)
    except BadImage:
        raise
    except Exception as exc:  # Pillow raises many types for corrupt data
        raise BadImage(f"corrupt image ({exc.__class__.__name__}: {exc})") from None


def clip_to_epsilon(clean: np.ndarray, adversarial: np.ndarray, epsilon: int) -> tuple[np.ndarray, bool]:
    """Project onto [x-eps, x+eps] intersected with [0, 255]; report whether anything moved."""
    low = np.clip(clean.astype(np.int16) - epsilon, 0, 255)
    high = np.clip(clean.astype(np.int16) + epsilon, 0, 255)
    clipped = np.clip(adversarial, low, high).astype(np.uint8)
    return clipped, bool(np.any(clipped != adversarial))


def linf(clean: np.ndarray, adversarial: np.ndarray) -> int:
    return int(np.max(np.abs(clean.astype(np.int16) - adversarial.astype(np.int16))))


def l2(clean: np.ndarray, adversarial: np.ndarray) -> float:
    """The Euclidean norm of the change, on the 0-255 scale over every pixel value: at most
    epsilon * sqrt(299 * 299 * 3), about 518 epsilon, under an L-infinity budget epsilon."""
    difference = clean.astype(np.int32) - adversarial.astype(np.int32)
    return float(np.sqrt(np.sum(difference * difference, dtype=np.int64)))


def amplified_perturbation(clean: np.ndarray, adversarial: np.ndarray, epsilon: int) -> np.ndarray:
    """The perturbation made visible: -eps..+eps stretched over the grey scale, no change mid-grey."""
    difference = adversarial.astype(np.int16) - clean.astype(np.int16)
    return np.clip(128 + difference * (127 / max(1, epsilon)), 0, 255).astype(np.uint8)


def center_crop_resize(image: PILImage.Image, size: int = IMAGE_SIZE) -> np.ndarray:
    """The largest centered square, resized to size x size RGB, as ImageNet evaluation does."""
    image = image.convert("RGB")
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    square = image.crop((left, top, left + side, top + side))
    return np.asarray(square.resize((size, size), PILImage.Resampling.BICUBIC), dtype=np.uint8)


@dataclass(frozen=True)
class ImageStore:
    """Content-addressed PNG files under one root: ``ab/abcdef....png``."""

    root: Path

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / f"{sha256}.png"

    def put(self, png: bytes) -> str:
        """Store PNG bytes and return their hash; writes go through a temp file and a rename,
        so a reader never sees half a file and two writers of the same content agree."""
        digest = sha256_bytes(png)
        target = self.path(digest)
        if target.exists():
            return digest
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as handle:
            handle.write(png)
        os.chmod(handle.name, 0o644)  # containers read inputs as a non-root user
        os.replace(handle.name, target)
        return digest

    def put_pixels(self, pixels: np.ndarray, level: int = PNG_LEVEL) -> str:
        return self.put(encode_png(pixels, level))

    def read_bytes(self, sha256: str) -> bytes:
        return self.path(sha256).read_bytes()

    def read_pixels(self, sha256: str) -> np.ndarray:
        return read_png(self.read_bytes(sha256))
