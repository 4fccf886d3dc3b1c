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

With a registry (``ARENA_REGISTRY``), the pin is the image's registry digest instead
(``sandbox.registry``): intake pushes the image, and a host that lacks it pulls it by
that digest.
"""

from dataclasses import asdict, dataclass
from enum import StrEnum

from docker.errors import ImageNotFound
from docker.models.images import Image

from arena.sandbox import registry as registries
from arena.sandbox.containers import ENGINE_ERRORS, SandboxError, docker_client


def _image(name: str) -> Image | None:
    """The image ``name`` (a tag, an id or a digest reference) on this engine, None when it has none."""
    try:
        return docker_client().images.get(name)
    except ImageNotFound:
        return None
    except ENGINE_ERRORS as exc:
        raise SandboxError(f"cannot ask the Docker engine about image {name!r}: {exc}") from None


def _image_id(name: str) -> str | None:
    image = _image(name)
    return image.id if image else None


def resolve(tag: str, registry: str | None = None) -> str:
    """The pin of the image ``tag`` names on this engine now: its id, or with a ``registry``
    its digest there, once pushed."""
    image = _image(tag)
    if image is None:
        raise SandboxError(f"container image {tag!r} is not on this Docker engine")
    return registries.push(registry, tag, image) if registry else image.id


def pin(tags: dict[str, str], registry: str | None = None) -> dict[str, str]:
    """At intake: the pin of each tag (``resolve``), by metadata field. ``container`` must be
    here (the dry run runs it); ``container_gpu`` is pinned when this engine holds it, else
    by the first GPU run (GPU images are often built on the GPU hosts only)."""
    pins = {"container": resolve(tags["container"], registry)}
    if tags.get("container_gpu") and _image(tags["container_gpu"]):
        pins["container_gpu"] = resolve(tags["container_gpu"], registry)
    return pins


def held(pin: str) -> bool:
    """Whether this engine holds the pinned image: the image whose id is ``pin``, or the
    image a digest reference names (a digest names one content only)."""
    found = _image_id(pin)
    return found is not None and (registries.is_reference(pin) or found == pin)


def require(pin: str, tag: str, submission: str) -> None:
    """Refuse to run ``submission`` on an engine without its pinned image, saying what to do:
    running what the tag names here could be other code than was accepted and scored. An
    image pinned by its registry digest is pulled by that digest instead."""
    if held(pin):
        return
    if registries.is_reference(pin):
        registries.pull(pin, submission)
        return
    here = _image_id(tag)
    now = f"; its {tag!r} is {here}" if here else f"; it has no {tag!r} either"
    raise SandboxError(
        f"{submission} is pinned to image {pin} (what {tag!r} named when it was pinned), which this Docker "
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


def short(pin: str) -> str:
    """A pin as a page shows it: the digest or id's first 12 hex digits, after the registry's
    repository for a digest reference."""
    repository, _at, digest = pin.rpartition("@")
    return f"{repository}@{digest[:19]}" if repository else digest[:19]


def _current(tag: str, pinned: str | None) -> str | None:
    """What ``tag`` names on this engine now, in the pin's terms: for a digest reference, the
    reference the tag's image has in the pin's repository (pushed or pulled here), its id when
    it has none."""
    image = _image(tag)
    if image is None:
        return None
    if not (pinned and registries.is_reference(pinned)):
        return image.id
    known = [d for d in image.attrs.get("RepoDigests") or [] if registries.repository_of(d) == registries.repository_of(pinned)]
    return pinned if pinned in known else next(iter(known), image.id)


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
        current = {field: _current(tag, pinned) for field, (tag, pinned) in images.items()}
    except SandboxError:
        return [ImageCheck(field, tag, pinned, None, PinState.UNKNOWN) for field, (tag, pinned) in images.items()]
    return [ImageCheck(field, tag, pinned, current[field], _state(pinned, current[field]))
            for field, (tag, pinned) in images.items()]
