"""Submission images through a container registry, pinned by their registry digest.

Without a registry, a pin is the engine's image id and every worker host must be given the
image by hand (``docker save | docker load``). With one (``ARENA_REGISTRY``), intake pushes the
image it checked and pins the manifest digest the registry answers
(``HOST:PORT/arena/python@sha256:...``). A digest names exactly one content, so every host runs
the bytes intake checked, and a host that lacks them pulls them by that digest, never by a tag
(which a registry, like an engine, may point at another image).

Pushes and pulls go through the host's Docker engine, which must reach the registry; a
registry on plain HTTP must be listed in the engine's ``insecure-registries``, except on
127.0.0.0/8, which the engine allows by default.
"""

from docker.auth import resolve_repository_name
from docker.errors import NotFound
from docker.models.images import Image
from docker.utils import parse_repository_tag

from arena.sandbox.containers import ENGINE_ERRORS, SandboxError, docker_client

#: What separates a pinned reference's repository from its digest.
DIGEST = "@sha256:"


def is_reference(pin: str) -> bool:
    """Whether ``pin`` is a registry digest reference rather than an engine's image id."""
    return DIGEST in pin


def repository_of(reference: str) -> str:
    return reference.split("@", 1)[0]


def registry_of(reference: str) -> str:
    return reference.split("/", 1)[0]


def repository(registry: str, tag: str) -> str:
    """Where ``tag``'s images go in ``registry``: its name without its own registry and tag
    (``arena/python:bookworm`` goes to ``HOST:PORT/arena/python``), so that a pin says what it is."""
    name, _tag = parse_repository_tag(tag)
    _index, path = resolve_repository_name(name)
    return f"{registry}/{path}"


def push(registry: str, tag: str, image: Image) -> str:
    """Push ``image`` (what ``tag`` names here) to ``registry``; its digest reference.

    The registry's tag is the image id (``sha256-<hex>``): each pushed image keeps a tag of
    its own, so no later push to the same repository leaves a pinned manifest untagged (a
    registry's garbage collection may delete untagged ones), and this engine keeps the
    reference too, as a host that pulled it would."""
    target, version = repository(registry, tag), image.id.replace(":", "-")
    failure = digest = None
    try:
        image.tag(target, version)
        for line in docker_client().images.push(target, tag=version, stream=True, decode=True):
            failure = line.get("error") or failure
            digest = line.get("aux", {}).get("Digest") or digest
    except ENGINE_ERRORS as exc:
        failure = str(exc)
    if failure or not digest:
        raise SandboxError(
            f"cannot push {tag!r} to the registry {registry} ({failure or 'it answered no digest'}): check that the "
            "registry runs and that this Docker engine reaches it (a plain-HTTP registry outside 127.0.0.0/8 must be "
            "in the engine's insecure-registries), or unset ARENA_REGISTRY"
        )
    return f"{target}@{digest}"


def pull(reference: str, submission: str) -> None:
    """Pull the pinned ``reference`` onto this engine, by its digest; a digest the registry no
    longer has, or a registry out of reach, is the platform's failure, named."""
    failure = None
    try:
        for line in docker_client().api.pull(reference, stream=True, decode=True):
            failure = line.get("error") or failure
    except NotFound as exc:
        raise SandboxError(
            f"{submission} is pinned to {reference}, which its registry no longer has ({exc.explanation}): push it "
            f"again from a host whose engine holds it (`docker push --all-tags {repository_of(reference)}`: the same "
            "image gives the same digest), or re-pin the submission (`arena submissions repin`), which re-runs it"
        ) from None
    except ENGINE_ERRORS as exc:
        failure = str(exc)
    if failure:
        raise SandboxError(f"cannot pull {reference}, the image {submission} is pinned to ({failure}): check that the "
                           "registry runs and that this Docker engine reaches it")
