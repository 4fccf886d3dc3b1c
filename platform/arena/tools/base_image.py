"""Building the container images sample submissions run in, with no registry.

Debian root filesystems are made with debootstrap (from the Debian mirror, the only
package source these machines reach) and imported into the engine; each recipe under
``submissions/base-images/<name>/Dockerfile`` is built FROM one of them (or FROM another
recipe) as ``arena/<name>:bookworm``.
Existing images are kept while their recipe is unchanged (each image carries its recipe's
hash as a label) unless a rebuild is asked for, so the step is idempotent, and an edited
recipe (a new ``arena_zoo``, say) is never run from a stale image.
"""

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from docker.errors import ImageNotFound
from docker.models.images import Image
from filelock import FileLock, Timeout

from arena import REPO_ROOT
from arena.config import Settings
from arena.errors import InputError, PlatformError
from arena.sandbox.containers import docker_client

SUITE = "bookworm"
#: Root filesystems and their Debian packages: Python with NumPy and Pillow for submissions
#: (and the platform's own image), PostgreSQL, Redis and the container registry for the
#: compose stack's services. A rootfs is built only when its tag is missing, so a tag names
#: one package list: the services' changed its tag when it gained docker-registry.
ROOTFS = {
    "arena/debian-rootfs:bookworm": ["python3-minimal", "python3-numpy", "python3-pil"],
    "arena/services-rootfs:bookworm-registry": ["postgresql", "redis-server", "docker-registry"],
}
RECIPES = REPO_ROOT / "submissions" / "base-images"
#: Left out of the image: documentation and package caches are of no use to a submission.
TRIM = ["usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale", "var/cache/apt/archives", "var/lib/apt/lists"]


class RecipeError(InputError):
    """An unknown base-image recipe was asked for."""


#: Recipes built when none are named: what the synthetic demo and the tests need.
DEFAULT_RECIPES = ["python"]


def recipe_tag(name: str) -> str:
    return f"arena/{name}:{SUITE}"


def recipe_names() -> list[str]:
    return sorted(d.name for d in RECIPES.iterdir() if (d / "Dockerfile").is_file())


#: The image label that holds the hash of the recipe an image was built from.
RECIPE_LABEL = "org.arena.recipe"


def _image(tag: str) -> Image | None:
    try:
        return docker_client().images.get(tag)
    except ImageNotFound:
        return None


def _parent(name: str) -> str | None:
    """The recipe this one is built FROM, if it is built FROM a recipe (not a root filesystem)."""
    return next((n for n in recipe_names() if recipe_tag(n) == base_of(name)), None)


def recipe_hash(name: str) -> str:
    """SHA-256 over the recipe folder's files and the hash of the recipe it is built FROM, so a
    change anywhere below an image rebuilds it."""
    digest = hashlib.sha256()
    _hash_files(digest, RECIPES / name, [RECIPES / name])
    parent = _parent(name)
    if parent:
        digest.update(recipe_hash(parent).encode())
    return digest.hexdigest()


def _hash_files(digest, root: Path, paths: list[Path]) -> None:
    """Add every file under ``paths`` to ``digest``: its name relative to ``root`` and its
    bytes, in name order (caches and build leftovers aside)."""
    files = {path for top in paths for path in ([top] if top.is_file() else top.rglob("*")) if path.is_file()}
    for path in sorted(p for p in files if not any(part == "__pycache__" or part.endswith(".egg-info") for part in p.parts)):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")


def _current(name: str) -> bool:
    """Whether the recipe's image exists and was built from the recipe as it is now."""
    image = _image(recipe_tag(name))
    return image is not None and (image.labels or {}).get(RECIPE_LABEL) == recipe_hash(name)


def base_of(name: str) -> str:
    """The image a recipe is built FROM (its Dockerfile's first FROM line)."""
    for line in (RECIPES / name / "Dockerfile").read_text().splitlines():
        if line.strip().upper().startswith("FROM "):
            return line.split()[1]
    raise RecipeError(f"submissions/base-images/{name}/Dockerfile has no FROM line")


def _debootstrap(settings: Settings, target: Path, packages: list[str]) -> None:
    if shutil.which("debootstrap") is None:
        raise PlatformError("debootstrap is not installed (apt-get install debootstrap)")
    command = ["debootstrap", "--variant=minbase", f"--include={','.join(packages)}", SUITE, str(target), settings.debian_mirror]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for relative in TRIM:
        shutil.rmtree(target / relative, ignore_errors=True)


def build_rootfs(settings: Settings, image: str) -> None:
    with tempfile.TemporaryDirectory(prefix="rootfs-", dir=settings.data_dir) as scratch:
        rootfs, tarball = Path(scratch) / "rootfs", Path(scratch) / "rootfs.tar"
        _debootstrap(settings, rootfs, ROOTFS[image])
        subprocess.run(["tar", "--numeric-owner", "-cf", str(tarball), "-C", str(rootfs), "."], check=True)
        repository, tag = image.split(":")
        docker_client().api.import_image_from_file(str(tarball), repository=repository, tag=tag)


def _pip_into(target: Path, *requirements: str) -> None:
    """Install packages with the host's pip into a folder the image copies: wheels for CPython
    3.11 (the base image's Python) come from the registries the host reaches; the image
    build itself never touches the network."""
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target", str(target), *requirements],
        check=True,
    )


def _context(folder: Path, scratch: Path) -> Path:
    """The recipe folder, plus ``site/`` when the recipe lists Python packages in requirements.txt."""
    requirements = folder / "requirements.txt"
    if not requirements.is_file():
        return folder
    context = scratch / folder.name
    shutil.copytree(folder, context, ignore=shutil.ignore_patterns("__pycache__"))
    _pip_into(context / "site", "-r", str(requirements))
    return context


def _in_build_order(names: list[str]) -> list[str]:
    """Each recipe after the recipe it is built FROM."""
    ordered: list[str] = []

    def visit(name: str) -> None:
        parent = _parent(name)
        if parent:
            visit(parent)
        if name not in ordered:
            ordered.append(name)

    for name in names:
        visit(name)
    return ordered


#: Held while base images are built: one engine serves the whole host.
BUILD_LOCK = Path(tempfile.gettempdir()) / "arena-base-images.lock"


@contextmanager
def _one_build_at_a_time(say: Callable[[str], None]) -> Iterator[None]:
    """Two builds at once on one host (two `arena images build`, parallel test workers) would
    debootstrap twice and race on the tags: the second waits for the first, then finds the
    images it wanted built."""
    lock = FileLock(BUILD_LOCK)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        say("another build of the base images is under way on this host: waiting for it...")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def build(
    settings: Settings, names: list[str] | None = None, rebuild: bool = False, say: Callable[[str], None] = print
) -> list[str]:
    """Make the named recipes' images (default: the light ones), with the recipes and root
    filesystems under them, when missing, built from an older recipe, or with ``rebuild``;
    return the tags built."""
    names = names or DEFAULT_RECIPES
    unknown = set(names) - set(recipe_names())
    if unknown:
        raise RecipeError(f"no base-image recipe named {', '.join(sorted(unknown))} (recipes: {', '.join(recipe_names())})")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with _one_build_at_a_time(say):
        return _build(settings, names, rebuild, say)


def _build(settings: Settings, names: list[str], rebuild: bool, say: Callable[[str], None]) -> list[str]:
    built: list[str] = []
    for name in _in_build_order(names):
        base, tag = base_of(name), recipe_tag(name)
        if base in ROOTFS and base not in built and (rebuild or _image(base) is None):
            say(f"debootstrap {SUITE} with {', '.join(ROOTFS[base])} (a minute or two)...")
            build_rootfs(settings, base)
            built.append(base)
        if rebuild or base in built or not _current(name):
            say(f"building {tag} from submissions/base-images/{name}")
            with tempfile.TemporaryDirectory(prefix="recipe-", dir=settings.data_dir) as scratch:
                context = _context(RECIPES / name, Path(scratch))
                docker_client().images.build(path=str(context), tag=tag, rm=True, network_mode="none",
                                             labels={RECIPE_LABEL: recipe_hash(name)})
            built.append(tag)
    return built


APP_IMAGE = "arena/app:latest"
#: Arena's Python dependencies, under arena/app: a layer of its own, rebuilt only when the
#: list in pyproject.toml changes, so that a change to Arena's code costs seconds, not the
#: minute that installing pandas, OpenCV, PyArrow and the rest takes.
APP_DEPS_IMAGE = "arena/app-deps:latest"
#: What arena/app is made of above its dependencies: Arena itself, and the folders copied beside it.
APP_SOURCES = ["pyproject.toml", "platform", "docs", "migrations", "submissions", "web", "workers/Dockerfile"]
APP_DEPS_RECIPE = REPO_ROOT / "workers" / "deps.Dockerfile"


def app_requirements() -> list[str]:
    """What arena/app-deps installs: the dependencies pyproject.toml lists for Arena and its
    ``ops`` extra (flower), and async-timeout, which redis-py needs on Python < 3.11.3 (Debian's
    3.11.2) and which the host's pip, judging markers by its own Python, would leave out."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    return [*project["dependencies"], *project["optional-dependencies"]["ops"], "async-timeout"]


def _hash_with_base(digest, base_tag: str) -> str:
    base = _image(base_tag)
    digest.update((base.id if base else "").encode())
    return digest.hexdigest()


def app_deps_hash() -> str:
    """SHA-256 over the dependency list, the recipe and the python base image under it."""
    digest = hashlib.sha256(json.dumps(app_requirements()).encode() + APP_DEPS_RECIPE.read_bytes())
    return _hash_with_base(digest, recipe_tag("python"))


def app_hash() -> str:
    """SHA-256 over the files arena/app is made of and the dependencies image under it: an
    unchanged tree keeps the image, any change builds it again."""
    digest = hashlib.sha256()
    _hash_files(digest, REPO_ROOT, [REPO_ROOT / path for path in APP_SOURCES])
    return _hash_with_base(digest, APP_DEPS_IMAGE)


def _labelled(tag: str, source: str) -> bool:
    image = _image(tag)
    return image is not None and (image.labels or {}).get(RECIPE_LABEL) == source


def build_app(rebuild: bool = False, say: Callable[[str], None] = print) -> str:
    """Build ``arena/app`` (and ``arena/app-deps`` under it) FROM the python base image, with
    packages installed by the host's pip, unless each was built from this very tree (its label
    holds its hash) or ``rebuild``."""
    client = docker_client()  # fail before the slow part when no engine answers
    with _one_build_at_a_time(say):
        if rebuild or not _labelled(APP_DEPS_IMAGE, app_deps_hash()):
            _build_app_deps(client, say)
        source = app_hash()
        if not rebuild and _labelled(APP_IMAGE, source):
            say(f"{APP_IMAGE} is up to date")
            return APP_IMAGE
        _build_app(client, source, say)
    return APP_IMAGE


def _build_app_deps(client, say: Callable[[str], None]) -> None:
    with tempfile.TemporaryDirectory(prefix="app-deps-") as scratch:
        context = Path(scratch)
        say("installing Arena's dependencies into the build context (a minute)...")
        _pip_into(context / "deps", *app_requirements())
        shutil.copy(APP_DEPS_RECIPE, context / "Dockerfile")
        say(f"building {APP_DEPS_IMAGE}")
        client.images.build(path=str(context), tag=APP_DEPS_IMAGE, rm=True, network_mode="none",
                            labels={RECIPE_LABEL: app_deps_hash()})


def _build_app(client, source: str, say: Callable[[str], None]) -> None:
    with tempfile.TemporaryDirectory(prefix="app-image-") as scratch:
        context = Path(scratch)
        say("installing Arena into the build context...")
        _pip_into(context / "site", "--no-deps", str(REPO_ROOT))
        for folder in ("docs", "migrations", "submissions", "web"):
            shutil.copytree(REPO_ROOT / folder, context / folder, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(REPO_ROOT / "workers" / "Dockerfile", context / "Dockerfile")
        say(f"building {APP_IMAGE}")
        client.images.build(path=str(context), tag=APP_IMAGE, rm=True, network_mode="none", labels={RECIPE_LABEL: source})
