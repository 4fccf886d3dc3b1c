"""The scratch folder of one container run: opaque input names in, outputs out, then gone.

Inputs are written under opaque names, so nothing a submission can read (file names,
order, folder) tells it the true label, the image's dataset id or the attack that made it.
A name is a keyed hash (HMAC-SHA256 under a secret key kept in the data folder, which
submissions never see) of the image's content and the caller's key for it: the same
run gets the same names on a re-run and on any worker sharing the data folder, so a
submission that processes its inputs in name order gives the same outputs every time.
"""

import hashlib
import hmac
import os
import secrets
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from arena.config import Settings
from arena.data.images import ImageStore
from arena.sandbox import containers
from arena.sandbox.code import SubmissionCode


@lru_cache
def naming_key(data_dir: Path) -> bytes:
    """The installation's secret for input names, made once (the first writer wins a race)."""
    path = data_dir / "naming.key"
    try:
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as handle:
            handle.write(secrets.token_bytes(32))
    except FileExistsError:
        pass
    return path.read_bytes()


@dataclass
class Staging:
    root: Path
    input: Path
    output: Path
    key: bytes  # the naming key
    #: opaque file name -> the caller's key for that image
    names: dict[str, int] = field(default_factory=dict)

    def add_image(self, store: ImageStore, sha256: str, key: int) -> str:
        name = hmac.new(self.key, f"{sha256}:{key}".encode(), hashlib.sha256).hexdigest()[:16] + ".png"
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
def staging(settings: Settings) -> Iterator[Staging]:
    root = settings.work_dir / uuid.uuid4().hex
    stage = Staging(root=root, input=root / "input", output=root / "output", key=naming_key(settings.data_dir))
    stage.input.mkdir(parents=True)
    stage.output.mkdir()
    try:
        yield stage
    finally:
        shutil.rmtree(root, ignore_errors=True)
