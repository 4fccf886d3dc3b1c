"""``arena images``: base images and the platform's own image, built offline."""

from typing import Annotated, Optional

import typer

from arena.cli.common import Commands, console, settings
from arena.tools import base_image

images_app = Commands(help="Container images for the sample submissions.", no_args_is_help=True)


@images_app.command("build")
def images_build(
    recipes: Annotated[Optional[list[str]], typer.Argument(help="Recipes in submissions/base-images (default: python).")] = None,
    rebuild: Annotated[bool, typer.Option(help="Rebuild images that already exist.")] = False,
) -> None:
    """Build base images offline: debootstrap a Debian rootfs, import it, build the recipes FROM it
    (`arena images build python torch` for the real-model samples too)."""
    built = base_image.build(settings(), recipes, rebuild=rebuild, say=console.print)
    console.print(f"base images ready ({len(built)} built, the rest already there)")


@images_app.command("app")
def images_app_build(
    rebuild: Annotated[bool, typer.Option(help="Build it even when this tree built the image there is.")] = False,
) -> None:
    """Build arena/app, the platform's own image (docker-compose.yml, worker hosts), offline;
    kept while the tree it was built from is unchanged."""
    tag = base_image.build_app(rebuild=rebuild, say=console.print)
    console.print(f"{tag} ready")
