"""Pixels: reading PNGs safely, the epsilon clip, content hashes, and the image store.

Every image the platform keeps, clean or adversarial, is a 299x299 RGB PNG stored under
its sha256, so identical outputs cost one file and a duplicate write is harmless.
"""

import hashlib
import io
import struct
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image as PILImage

from arena.config import Settings
from arena.data.objects import LocalObjects, Objects, store

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
    plain: bool = False  # the file is a plain_png of these pixels: it may be stored as it is


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


#: The store's encoding: libpng (through OpenCV) at zlib level 1, every row Sub-filtered and
#: only runs matched (Z_RLE). An adversarial image is noise on a photo, where longer matches
#: find nothing: this is about 4x faster than Pillow at level 1 (whose per-row search for a
#: filter took most of its time) for files as small, and flat images still shrink to a few KB
#: (docs/benchmarks.md, bench/hot_paths.py). Pillow writes no such choice.
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_SUB,
              cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]


def encode_png(pixels: np.ndarray) -> bytes:
    """The store's one canonical encoding (uint8 HxWx3 RGB): equal pixels give equal bytes,
    hence equal hashes; the file holds the image chunks alone (``plain_png``)."""
    encoded, png = cv2.imencode(".png", cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR), PNG_PARAMS)
    if not encoded:
        raise ValueError(f"OpenCV could not encode pixels of shape {pixels.shape} as PNG")
    return png.tobytes()


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: What a PNG needs to hold an image: a file of these chunks alone carries nothing but its pixels.
IMAGE_CHUNKS = {b"IHDR", b"IDAT", b"IEND"}


def plain_png(data: bytes) -> bool:
    """Whether ``data`` is an 8-bit RGB, non-interlaced PNG of the image chunks alone, with
    nothing after its end: no text, no metadata, no chunk of its own. Only such a file is
    stored as an attack submitted it, so that what defenses are given says nothing but its
    pixels (the rest is written anew by ``encode_png``). Whether its chunks are sound is
    the decoder's to say (Pillow checks each chunk's CRC)."""
    if not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR" or data[24:27] != b"\x08\x02\x00" \
            or data[28:29] != b"\x00":  # bit depth 8, RGB; compression 0, not interlaced
        return False
    offset = len(PNG_SIGNATURE)
    while offset + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, offset)
        if kind not in IMAGE_CHUNKS:
            return False
        offset += 12 + length  # length, type, data, CRC
        if kind == b"IEND":
            return offset == len(data)
    return False


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
            rgb = image if converted is None else image.convert("RGB")
            resized = None
            if (width, height) != (IMAGE_SIZE, IMAGE_SIZE):
                rgb, resized = rgb.resize((IMAGE_SIZE, IMAGE_SIZE), PILImage.Resampling.BICUBIC), (width, height)
            pixels = np.asarray(rgb, dtype=np.uint8)
            return AttackOutput(pixels, converted, resized, plain=converted is None and resized is None and plain_png(data))
    except BadImage:
        raise
    except Exception as exc:  # Pillow raises many types for corrupt data
        raise BadImage(f"corrupt image ({exc.__class__.__name__}: {exc})") from None


def clip_to_epsilon(clean: np.ndarray, adversarial: np.ndarray, epsilon: int) -> tuple[np.ndarray, bool]:
    """Project onto [x-eps, x+eps] intersected with [0, 255]; report whether anything moved.
    An output already inside the ball (an honest attack's) is returned as it is, after one
    cheap pass over its pixels."""
    if linf(clean, adversarial) <= epsilon:
        return adversarial, False
    low = clean - np.minimum(clean, epsilon)  # in uint8 throughout: never below 0 nor above 255
    high = clean + np.minimum(255 - clean, epsilon)
    return np.clip(adversarial, low, high), True


def linf(clean: np.ndarray, adversarial: np.ndarray) -> int:
    """The largest change of any pixel value (uint8 arrays: max - min never wraps around)."""
    return int(np.max(np.maximum(clean, adversarial) - np.minimum(clean, adversarial)))


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


class ImageStore:
    """Content-addressed PNGs: ``ab/abcdef....png`` under a folder (a ``Path``), or under
    ``images/`` in the object store the settings name (``image_store``)."""

    def __init__(self, where: "Path | Objects") -> None:
        self.objects: Objects = LocalObjects(where) if isinstance(where, Path) else where

    @staticmethod
    def key(sha256: str) -> str:
        return f"{sha256[:2]}/{sha256}.png"

    def path(self, sha256: str) -> Path:
        """A local file of the image: its place in a folder store (there or not), or this
        host's checked copy of the object (``StoreError`` when the store lacks it or it is damaged)."""
        return self.objects.path(self.key(sha256), sha256)

    def put(self, png: bytes) -> str:
        """Store PNG bytes and return their hash; storing the same bytes twice is harmless."""
        digest = sha256_bytes(png)
        self.objects.put(self.key(digest), png)
        return digest

    def put_pixels(self, pixels: np.ndarray) -> str:
        return self.put(encode_png(pixels))

    def read_bytes(self, sha256: str) -> bytes:
        return self.path(sha256).read_bytes()

    def read_pixels(self, sha256: str) -> np.ndarray:
        return read_png(self.read_bytes(sha256))


def image_store(settings: Settings) -> ImageStore:
    """The installation's images, wherever its settings keep them."""
    return ImageStore(store(settings).images)
