"""The scratch folder of one container run: opaque input names in, outputs out, then gone.

Inputs are written under random names, so nothing a submission can read (file names,
order, folder) tells it the true label, the image's dataset id or the attack that made it.
"""

import secrets
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from arena.config import Settings
from arena.data.images import ImageStore
from arena.intake.metadata import SubmissionCode
from arena.sandbox import containers


@dataclass
class Staging:
    root: Path
    input: Path
    output: Path
    #: opaque file name -> the caller's key for that image
    names: dict[str, int] = field(default_factory=dict)

    def add_image(self, store: ImageStore, sha256: str, key: int) -> str:
        name = f"{secrets.token_hex(8)}.png"
        target = self.input / name
        try:
            target.hardlink_to(store.path(sha256))  # cheap and the store is not writable from inside
        except OSError:
            try:
                shutil.copyfile(store.path(sha256), target)
            except OSError as exc:  # e.g. the work storage is full: the platform's failure, not the run's
                raise containers.SandboxError(f"cannot stage an input in {self.input}: {exc}") from None
        self.names[name] = key
        return name

    def run(self, settings: Settings, code: SubmissionCode, output_mount: str, *arguments: str) -> containers.RunResult:
        """Run the submission on this stage: code and inputs read-only, ``output_mount`` writable,
        under a time limit scaled by the number of images."""
        return containers.run(
            code.image(gpu=settings.sandbox.gpu),
            code.command("/input_images", *arguments),
            [
                containers.Mount(code.root, "/code"),
                containers.Mount(self.input, "/input_images"),
                containers.Mount(self.output, output_mount, writable=True),
            ],
            output=self.output,
            time_limit=settings.time_limit(len(self.names)),
            limits=settings.sandbox,
        )


@contextmanager
def staging(work_dir: Path) -> Iterator[Staging]:
    root = work_dir / uuid.uuid4().hex
    stage = Staging(root=root, input=root / "input", output=root / "output")
    stage.input.mkdir(parents=True)
    stage.output.mkdir()
    try:
        yield stage
    finally:
        shutil.rmtree(root, ignore_errors=True)
