"""Container images pinned to the engine's image id, so that a moved tag changes nothing.

A tag (``arena/python:bookworm``) is a name the engine may point at another image at any
time: a rebuild, a ``docker load``, a pull. The 2017 evaluation lists a tag that changed
during its multi-day run as a known problem: part of a matrix was computed with one
image and part with another. Intake therefore resolves each tag a submission names to the
image id (``sha256:...``, the hash of the image's configuration) and stores it, and every
run starts its container from that id. A tag that later names another image is reported
(``check``), never followed; an organizer who wants the new image re-pins, which re-runs
the submission.

The id is the same on every engine only for the same image: ``docker save`` and
``docker load`` keep it, a rebuild from the same recipe does not. A host that lacks the
pinned image is refused with the way out (``require``), not given the tag instead.
"""

from dataclasses import asdict, dataclass
from enum import StrEnum

from docker.errors import ImageNotFound

from arena.sandbox.containers import ENGINE_ERRORS, SandboxError, docker_client


def _image_id(name: str) -> str | None:
    """The id of the image ``name`` (a tag or an id) on this engine, None when it has none."""
    try:
        return docker_client().images.get(name).id
    except ImageNotFound:
        return None
    except ENGINE_ERRORS as exc:
        raise SandboxError(f"cannot ask the Docker engine about image {name!r}: {exc}") from None


def resolve(tag: str) -> str:
    """The id of the image ``tag`` names on this engine now."""
    image_id = _image_id(tag)
    if image_id is None:
        raise SandboxError(f"container image {tag!r} is not on this Docker engine")
    return image_id


def pin(tags: dict[str, str]) -> dict[str, str]:
    """At intake: the id of each tag, by metadata field. ``container`` must be here (the dry
    run runs it); ``container_gpu`` is pinned when this engine holds it, else by the first
    GPU run (GPU images are often built on the GPU hosts only)."""
    pins = {"container": resolve(tags["container"])}
    if tags.get("container_gpu") and (gpu_id := _image_id(tags["container_gpu"])):
        pins["container_gpu"] = gpu_id
    return pins


def held(image_id: str) -> bool:
    """Whether this engine holds the image whose id is ``image_id``."""
    return _image_id(image_id) == image_id


def require(image_id: str, tag: str, submission: str) -> None:
    """Refuse to run ``submission`` on an engine without its pinned image, saying what to do:
    running what the tag names here could be other code than was accepted and scored."""
    if held(image_id):
        return
    here = _image_id(tag)
    now = f"; its {tag!r} is {here}" if here else f"; it has no {tag!r} either"
    raise SandboxError(
        f"{submission} is pinned to image {image_id} (what {tag!r} named when it was pinned), which this Docker "
        f"engine does not hold{now}: copy the pinned image to this host (`docker save` where it is, `docker load` "
        "here: the id is kept), or re-pin the submission (`arena submissions repin`), which re-runs it"
    )


class PinState(StrEnum):
    PINNED = "pinned"  # the tag still names the pinned image
    DRIFTED = "drifted"  # the tag now names another image; runs keep the pinned one
    TAG_MISSING = "tag missing"  # this engine has no such tag
    UNPINNED = "unpinned"  # not pinned yet: the first run that needs it pins it
    UNKNOWN = "unknown"  # no Docker engine answered


@dataclass(frozen=True)
class ImageCheck:
    """One image a submission names, its pin, and what the tag names on this engine now."""

    field: str  # the metadata field: container or container_gpu
    tag: str
    pinned: str | None
    current: str | None
    state: PinState

    def as_dict(self) -> dict:
        return {**asdict(self), "state": self.state.value}


def _state(pinned: str | None, current: str | None) -> PinState:
    if pinned is None:
        return PinState.UNPINNED
    if current is None:
        return PinState.TAG_MISSING
    return PinState.PINNED if current == pinned else PinState.DRIFTED


def check(images: dict[str, tuple[str, str | None]]) -> list[ImageCheck]:
    """For each (tag, pinned id) by metadata field, whether the tag still names the pinned
    image on this engine; ``unknown`` for all when no engine answers (a web host without one)."""
    try:
        current = {field: _image_id(tag) for field, (tag, _pinned) in images.items()}
    except SandboxError:
        return [ImageCheck(field, tag, pinned, None, PinState.UNKNOWN) for field, (tag, pinned) in images.items()]
    return [ImageCheck(field, tag, pinned, current[field], _state(pinned, current[field]))
            for field, (tag, pinned) in images.items()]
