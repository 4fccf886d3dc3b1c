"""Building the container images sample submissions run in, with no registry.

A Debian root filesystem is made with debootstrap (from the Debian mirror, the only
package source these machines reach), imported into the engine, and each recipe under
``submissions/base-images/<name>/Dockerfile`` is built FROM it as ``arena/<name>:bookworm``.
Existing images are kept unless a rebuild is asked for, so the step is idempotent.
"""

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from docker.errors import ImageNotFound

from arena import REPO_ROOT
from arena.config import Settings
from arena.sandbox import docker_client

ROOTFS_IMAGE = "arena/debian-rootfs:bookworm"
SUITE = "bookworm"
#: What the sample submissions need inside: Python with NumPy and Pillow, from Debian.
PACKAGES = ["python3-minimal", "python3-numpy", "python3-pil"]
RECIPES = REPO_ROOT / "submissions" / "base-images"
#: Left out of the image: documentation and package caches are of no use to a submission.
TRIM = ["usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale", "var/cache/apt/archives", "var/lib/apt/lists"]


class RecipeError(ValueError):
    """An unknown base-image recipe was asked for."""


#: Recipes built when none are named: what the synthetic demo and the tests need.
DEFAULT_RECIPES = ["python"]


def recipe_tag(name: str) -> str:
    return f"arena/{name}:{SUITE}"


def recipe_names() -> list[str]:
    return sorted(d.name for d in RECIPES.iterdir() if (d / "Dockerfile").is_file())


def _exists(tag: str) -> bool:
    try:
        docker_client().images.get(tag)
    except ImageNotFound:
        return False
    return True


def _debootstrap(settings: Settings, target: Path) -> None:
    if shutil.which("debootstrap") is None:
        raise RuntimeError("debootstrap is not installed (apt-get install debootstrap)")
    command = ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, str(target), settings.debian_mirror]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for relative in TRIM:
        shutil.rmtree(target / relative, ignore_errors=True)


def build_rootfs(settings: Settings) -> None:
    with tempfile.TemporaryDirectory(prefix="rootfs-", dir=settings.data_dir) as scratch:
        rootfs, tarball = Path(scratch) / "rootfs", Path(scratch) / "rootfs.tar"
        _debootstrap(settings, rootfs)
        subprocess.run(["tar", "--numeric-owner", "-cf", str(tarball), "-C", str(rootfs), "."], check=True)
        repository, tag = ROOTFS_IMAGE.split(":")
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


def build(
    settings: Settings, names: list[str] | None = None, rebuild: bool = False, say: Callable[[str], None] = print
) -> list[str]:
    """Make the named recipes' images (default: the light ones) and the rootfs under them, when
    missing or with ``rebuild``; return the tags built."""
    names = names or DEFAULT_RECIPES
    unknown = set(names) - set(recipe_names())
    if unknown:
        raise RecipeError(f"no base-image recipe named {', '.join(sorted(unknown))} (recipes: {', '.join(recipe_names())})")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    built = []
    if rebuild or not _exists(ROOTFS_IMAGE):
        say(f"debootstrap {SUITE} with {', '.join(PACKAGES)} (about a minute)...")
        build_rootfs(settings)
        built.append(ROOTFS_IMAGE)
    for name in DEFAULT_RECIPES + [n for n in names if n not in DEFAULT_RECIPES]:  # others build FROM python
        tag = recipe_tag(name)
        if rebuild or built or not _exists(tag):
            say(f"building {tag} from submissions/base-images/{name}")
            with tempfile.TemporaryDirectory(prefix="recipe-", dir=settings.data_dir) as scratch:
                context = _context(RECIPES / name, Path(scratch))
                docker_client().images.build(path=str(context), tag=tag, rm=True, network_mode="none")
            built.append(tag)
    return built


APP_IMAGE = "arena/app:latest"


def build_app(say: Callable[[str], None] = print) -> str:
    """Build ``arena/app`` FROM the python base image, with Arena installed by the host's pip."""
    client = docker_client()  # fail before the slow part when no engine answers
    with tempfile.TemporaryDirectory(prefix="app-image-") as scratch:
        context = Path(scratch)
        say("installing Arena and its dependencies into the build context...")
        _pip_into(context / "site", str(REPO_ROOT))
        for folder in ("migrations", "submissions"):
            shutil.copytree(REPO_ROOT / folder, context / folder, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(REPO_ROOT / "workers" / "Dockerfile", context / "Dockerfile")
        say(f"building {APP_IMAGE}")
        client.images.build(path=str(context), tag=APP_IMAGE, rm=True, network_mode="none")
    return APP_IMAGE
