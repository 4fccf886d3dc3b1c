"""The scratch folder of one container run: opaque input names in, outputs out, then gone.

Inputs are written under opaque names, so nothing a submission can read (file names,
order, folder) tells it the true label, the image's dataset id or the attack that made it.
A name is a keyed hash (HMAC-SHA256) of the image's content and the name of its clean
image in the dataset, under its round's naming key (``Round.naming_key``: 32 random bytes
made with the round, kept in the database, never mounted). Nothing else goes in, and no
database id: the same round gets the same names on a re-run, on any worker, and on another
installation given the round's key and dataset, so a submission that processes its inputs
in name order (one random stream over its files, say) gives the same outputs everywhere.
That is what lets a published round be replayed elsewhere: its bundle carries its key
(``results.bundle``, ``tools.replay``). Each round has its own random key, so publishing
one round's key says nothing about the names of another, a hidden one included.
"""

import hashlib
import hmac
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from arena.config import Settings
from arena.data.images import ImageStore
from arena.sandbox import containers
from arena.sandbox.code import SubmissionCode


def input_name(naming_key: bytes, sha256: str, image_name: str) -> str:
    """The opaque file name of an image whose content hashes to ``sha256`` and whose clean
    image is ``image_name`` in its dataset: unique within a run, as a run never holds one
    dataset image twice (an attack pack is one epsilon, a defense pack one source)."""
    return hmac.new(naming_key, f"{sha256}:{image_name}".encode(), hashlib.sha256).hexdigest()[:16] + ".png"


@dataclass
class Staging:
    root: Path
    input: Path
    output: Path
    naming_key: bytes  # the round's
    #: opaque file name -> the caller's key for that image
    names: dict[str, int] = field(default_factory=dict)

    def add_image(self, store: ImageStore, sha256: str, image_name: str, key: int) -> str:
        """Stage one input under its opaque name; ``key`` is what the caller gets back for it."""
        name = input_name(self.naming_key, sha256, image_name)
        if name in self.names:
            raise ValueError(f"{image_name} is staged twice in one run: its inputs must be distinct dataset images")
        target, source = self.input / name, store.path(sha256)  # a StoreError when it cannot be had: retried
        try:
            target.hardlink_to(source)  # cheap and the store is not writable from inside
        except OSError:
            try:
                shutil.copyfile(source, target)
            except OSError as exc:  # e.g. the work storage is full: the platform's failure, not the run's
                raise containers.SandboxError(f"cannot stage an input in {self.input}: {exc}") from None
        self.names[name] = key
        return name

    def _mounts(self, code: SubmissionCode, output_mount: str) -> list[containers.Mount]:
        return [
            containers.Mount(code.root, "/code"),
            containers.Mount(self.input, "/input_images"),
            containers.Mount(self.output, output_mount, writable=True),
        ]

    def run(self, settings: Settings, code: SubmissionCode, output_mount: str, *arguments: str) -> containers.RunResult:
        """Run the submission on this stage: code and inputs read-only, ``output_mount`` writable,
        under a time limit scaled by the number of images."""
        return containers.run(
            code.image(gpu=settings.sandbox.gpu),
            code.command("/input_images", *arguments),
            self._mounts(code, output_mount),
            output=self.output,
            time_limit=settings.time_limit(len(self.names)),
            limits=settings.sandbox,
        )

    @contextmanager
    def passes(self, settings: Settings, code: SubmissionCode, output_mount: str,
               count: int) -> Iterator[Callable[..., containers.RunResult]]:
        """A runner of up to ``count`` runs of the submission on this stage, each as ``run``
        makes it and each from an empty output folder, in one container where the image allows
        (``containers.resident``: it has /bin/sh), else in a container each. In one container,
        each run after the first starts as in a fresh one (``Resident.run``: the previous run's
        processes gone, /tmp and /dev/shm empty), so a submission whose outputs differ between
        two runs on the same inputs still shows it, and one whose outputs would not differ
        between two fresh containers does not."""
        limit = settings.time_limit(len(self.names))
        with containers.resident(code.image(gpu=settings.sandbox.gpu), self._mounts(code, output_mount), self.output,
                                 count * limit, settings.sandbox) as box:
            done = 0

            def run_pass(*arguments: str) -> containers.RunResult:
                nonlocal done
                if done == count:
                    raise ValueError(f"this stage's container was started for {count} runs")
                if done:
                    _empty(self.output)
                done += 1
                if box is None:
                    return self.run(settings, code, output_mount, *arguments)
                return box.run(code.command("/input_images", *arguments), limit)

            yield run_pass


def _empty(folder: Path) -> None:
    """Remove what a run wrote, so that the next run's outputs are its own."""
    for path in folder.iterdir():
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


@contextmanager
def staging(settings: Settings, naming_key: bytes) -> Iterator[Staging]:
    """A fresh scratch folder whose inputs are named under ``naming_key`` (the round's)."""
    root = settings.work_dir / uuid.uuid4().hex
    stage = Staging(root=root, input=root / "input", output=root / "output", naming_key=naming_key)
    stage.input.mkdir(parents=True)
    stage.output.mkdir()
    try:
        yield stage
    finally:
        shutil.rmtree(root, ignore_errors=True)
