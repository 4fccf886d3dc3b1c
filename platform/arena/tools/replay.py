"""Replaying a published round from its results bundle: the same images, code, settings,
input names and packs, run on this installation, and its matrices compared cell by cell
with the bundle's.

A submission's output may depend on more than its own image: on the other images of its
container run and on their names (one random stream drawn over its files in name order, a
statistic over the run). What fixes those is the round's naming key (``sandbox.staging``),
each submission's images per run with the dataset's batch size (``execution.packing``),
and the image each submission runs (its pinned id). A published round's bundle carries all
of them (``results.bundle``). ``prepare`` sets them up here, refusing before anything runs,
and naming what is wrong, a dataset, code or image that is not the bundle's; ``compare``
writes the replayed matrices as the bundle's files hold them and compares the text of every
cell, so that "the same" means the same file.
"""

import io
import json
import re
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from arena.admin import teams
from arena.competition import rounds
from arena.config import EpsilonSchedule, Settings
from arena.data.dataset import find_dataset
from arena.db import transaction
from arena.errors import ConflictError, InputError
from arena.intake.archive import pack
from arena.intake.metadata import Metadata
from arena.intake.submit import install, unpacked
from arena.models import Dataset, Entry, Round, Submission, SubmissionStatus, Visibility, utcnow
from arena.results import csv_files
from arena.results.bundle import MANIFEST, batch_size, dataset_sha256
from arena.results.export import MATRICES
from arena.results.scoring import Standings
from arena.sandbox import pinning, registry

#: The matrix files of a bundle: ``error_matrix.csv``, ``error_matrix_eps4.csv``...
MATRIX_FILE = re.compile(rf"^({'|'.join(MATRICES)})(?:_eps(\d+))?\.csv$")


class ReplayError(InputError):
    """The bundle, the dataset, the code or the images cannot be replayed as given; the
    message says which and why."""


@dataclass(frozen=True)
class Bundle:
    """What a replay reads of a results bundle: its manifest and its matrices' CSV text."""

    manifest: dict
    matrices: dict[str, str]  # file name -> its text

    @classmethod
    def read(cls, path: Path) -> "Bundle":
        try:
            with zipfile.ZipFile(path) as archive:
                manifest = json.loads(archive.read(MANIFEST))
                matrices = {name: archive.read(name).decode() for name in archive.namelist() if MATRIX_FILE.match(name)}
        except (OSError, KeyError, zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ReplayError(f"{path} is not a results bundle: {exc}") from None
        if not matrices:
            raise ReplayError(f"{path} holds no matrix file (error_matrix.csv...): nothing to compare a replay with")
        return cls(manifest, matrices)

    @property
    def naming_key(self) -> str:
        """The round's naming key, hex; refused when the bundle has none (a round not
        published, or whose results predate per-round keys) or a malformed one."""
        key = self.manifest["round"].get("naming_key")
        if not key:
            raise ReplayError("the bundle carries no naming key: only a published round's bundle has one (and not one "
                              "whose results were named before migration 0019); without it a submission that follows "
                              "its input names or their order gives other results")
        try:
            if len(bytes.fromhex(key)) == 32:
                return key
        except ValueError:
            pass
        raise ReplayError(f"the bundle's naming key {key!r} is not 32 bytes in hex")

    @property
    def entries(self) -> list[dict]:
        """The entered submissions that have results: the accepted ones."""
        return [entry for entry in self.manifest["submissions"] if entry["status"] == SubmissionStatus.ACCEPTED.value]


@dataclass(frozen=True)
class Prepared:
    """A round set up to be replayed: its name, its dataset's, and how many entries it has."""

    round: str
    dataset: str
    entries: int


@dataclass(frozen=True)
class Difference:
    """One cell whose text differs (``absent``: the cell is not in that matrix)."""

    matrix: str
    attack: str
    defense: str
    published: str
    replayed: str


@dataclass(frozen=True)
class Comparison:
    cells: int  # cells compared, over every matrix file
    files: int
    differences: list[Difference]


ABSENT = "absent"


# --- setting the round up ---------------------------------------------------------------


def prepare(settings: Settings, bundle: Bundle, submissions: Path, dataset_name: str | None = None) -> Prepared:
    """Set the bundle's round up on the dataset imported for it (default: the bundle's
    dataset name): its settings, naming key and entries, each with its code (found in
    ``submissions`` by code hash), pinned images and images per run. Everything is checked
    before anything is stored. A round already set up from this bundle (a replay that was
    interrupted) is taken as it is, so its missing jobs run and the comparison follows."""
    key = bundle.naming_key
    with transaction(settings) as session:
        dataset = _checked_dataset(session, bundle.manifest["dataset"], dataset_name)
        resumed = _set_up_before(session, dataset, bundle, key)
        if resumed is not None:
            return resumed
    _require_images(settings, bundle.entries)
    code = _install_code(settings, submissions, bundle.entries)
    with transaction(settings) as session:
        dataset = session.get_one(Dataset, dataset.id)
        round_ = _new_round(session, settings, dataset, bundle.manifest["round"], key)
        for entry in bundle.entries:
            _enter(session, round_, entry, code[entry["code_sha256"]])
        return Prepared(round_.name, dataset.name, len(bundle.entries))


def _checked_dataset(session: Session, published: dict, name: str | None) -> Dataset:
    """The dataset to replay on: the round's images, names, labels and target classes, cut
    into batches of the round's size."""
    dataset = find_dataset(session, name or published["name"])
    if (found := dataset_sha256(session, dataset.id)) != published["sha256"]:
        raise ReplayError(f"dataset {dataset.name!r} is not the round's: it hashes to {found}, the bundle's to "
                          f"{published['sha256']} (images, names, labels and target classes all count): import the "
                          "round's own data")
    if (size := batch_size(session, dataset.id)) != published["batch_size"]:
        raise ReplayError(f"dataset {dataset.name!r} is cut into batches of {size} images, the round's into batches of "
                          f"{published['batch_size']}, which decide the packs: import it again with "
                          f"ARENA_BATCH_SIZE={published['batch_size']}")
    return dataset


def _set_up_before(session: Session, dataset: Dataset, bundle: Bundle, key: str) -> Prepared | None:
    """The dataset's round when this bundle set it up already; None when it has no entry
    (the round ``arena dataset import`` opens, which is replaced); refused otherwise."""
    round_ = rounds.of_dataset(session, dataset.id)
    if round_ is None:
        return None
    entered = set(session.scalars(select(Submission.sha256).join(Entry).where(Entry.round_id == round_.id)))
    if not entered:
        return None
    if round_.naming_key == key and entered == {entry["code_sha256"] for entry in bundle.entries}:
        return Prepared(round_.name, dataset.name, len(entered))
    raise ConflictError(f"round {round_.name!r} on dataset {dataset.name!r} has entries of its own: a replay needs the "
                        "round's dataset with nothing entered (import it again under another name)")


def _require_images(settings: Settings, entries: list[dict]) -> None:
    """Every entry's pinned image, the one a run on this host starts, must be on this engine:
    a tag may name other code here. One pinned by its registry digest is pulled by it."""
    missing = []
    for entry in entries:
        field = "container_gpu" if settings.sandbox.gpu and entry["container_gpu"] else "container"
        image = entry[f"{field}_image"]
        if image is not None and registry.is_reference(image) and not pinning.held(image):
            registry.pull(image, entry["name"])
        if image is None or not pinning.held(image):
            missing.append(f"{entry['name']} ({image or 'not pinned in the bundle'}, tagged {entry[field]!r})")
    if missing:
        raise ReplayError(f"this Docker engine lacks the images the round ran: {'; '.join(missing)}; copy each from "
                          "the round's host (`docker save` there, `docker load` here: the id is kept)")


@contextmanager
def _unpacked(settings: Settings, candidate: Path) -> Iterator[tuple[Path, Metadata, str]]:
    """An archive, or a folder packed first, unpacked as intake unpacks an upload."""
    if not candidate.is_dir():
        with unpacked(settings, candidate) as found:
            yield found
        return
    settings.work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=settings.work_dir) as scratch:
        with unpacked(settings, pack(candidate, Path(scratch) / f"{candidate.name}.tar.gz")) as found:
            yield found


def _install_code(settings: Settings, folder: Path, entries: list[dict]) -> dict[str, Metadata]:
    """Install the code of every entry from ``folder`` (archives or folders, under any name,
    matched by the hash of their unpacked files); the metadata of each, by code hash."""
    if not folder.is_dir():
        raise ReplayError(f"{folder} is not a folder: give the folder holding the round's submissions")
    wanted = {entry["code_sha256"]: entry["name"] for entry in entries}
    found: dict[str, Metadata] = {}
    unreadable = []
    for candidate in sorted(folder.iterdir()):
        try:
            with _unpacked(settings, candidate) as (root, metadata, sha256):
                if sha256 in wanted and sha256 not in found:
                    install(settings, root, metadata, sha256)
                    found[sha256] = metadata
        except InputError as exc:  # not an archive, or no sound metadata.json: not a submission
            unreadable.append(f"{candidate.name}: {exc}")
    missing = [f"{name} (code {sha256})" for sha256, name in wanted.items() if sha256 not in found]
    if missing:
        skipped = f"; not read: {'; '.join(unreadable)}" if unreadable else ""
        raise ReplayError(f"{folder} holds no code that hashes as the bundle's for {', '.join(missing)} (an archive "
                          f"as uploaded, or the unpacked folder, is matched by the hash of its files){skipped}")
    return found


def _new_round(session: Session, settings: Settings, dataset: Dataset, published: dict, key: str) -> Round:
    """The bundle's round on ``dataset``, with its settings and naming key, closed to uploads
    and hidden: it exists to be compared. An empty round already on the dataset is replaced."""
    if (opened := rounds.of_dataset(session, dataset.id)) is not None:
        session.delete(opened)
        session.flush()
    round_ = rounds.create(session, settings, published["name"], dataset, epsilons=published["epsilons"],
                           eps_schedule=EpsilonSchedule(published["eps_schedule"]),
                           seconds_per_image=published["seconds_per_image"], closes_at=utcnow(),
                           visibility=Visibility.HIDDEN)
    round_.naming_key = key
    return round_


def _enter(session: Session, round_: Round, entry: dict, metadata: Metadata) -> Submission:
    """The entry's submission, accepted as it was, with its pinned images and images per run:
    no dry run, which would pin what the tags name here and measure its own pack size."""
    clash = session.scalar(select(Submission.name).where(
        (Submission.name == entry["name"]) | (Submission.sha256 == entry["code_sha256"])))
    if clash is not None:
        raise ConflictError(f"this installation has a submission {clash!r} already, with the name or the code of "
                            f"{entry['name']!r}: replay into an installation without the round's submissions")
    team = teams.find_or_create(session, entry["team"])
    submission = Submission(
        team=team, name=entry["name"], kind=metadata.type, sha256=entry["code_sha256"], meta=metadata.model_dump(),
        status=SubmissionStatus.ACCEPTED, pack_images=entry["pack_images"], container_image=entry["container_image"],
        container_gpu_image=entry["container_gpu_image"], baseline=entry["baseline"],
        nondeterministic_share=entry["nondeterministic_share"],
    )
    session.add_all([submission, Entry(round=round_, submission=submission, carried=entry["carried"])])
    session.flush()
    return submission


# --- comparing ------------------------------------------------------------------------


def compare(settings: Settings, dataset_name: str, bundle: Bundle) -> Comparison:
    """Every matrix file of the bundle against the same matrix of the replayed dataset,
    written as the export writes it, cell by cell."""
    with transaction(settings) as session:
        standings = Standings.compute(session, find_dataset(session, dataset_name))
    cells, differences = 0, []
    for file, published in sorted(bundle.matrices.items()):
        stem, epsilon = MATRIX_FILE.match(file).groups()
        replayed = csv_files.write(standings.matrix(MATRICES[stem], None if epsilon is None else int(epsilon)),
                                   index=True)
        compared, differing = _cells(file.removesuffix(".csv"), _table(published), _table(replayed))
        cells, differences = cells + compared, differences + differing
    return Comparison(cells, len(bundle.matrices), differences)


def _table(text: str) -> pd.DataFrame:
    """A matrix file as text cells (attacks down, defenses across), nothing converted."""
    return pd.read_csv(io.StringIO(text), index_col=0, dtype=str, keep_default_na=False)


def _cells(matrix: str, published: pd.DataFrame, replayed: pd.DataFrame) -> tuple[int, list[Difference]]:
    """How many cells the two matrices have between them, and those that differ."""
    attacks = list(dict.fromkeys([*published.index, *replayed.index]))
    defenses = list(dict.fromkeys([*published.columns, *replayed.columns]))
    differing = []
    for attack in attacks:
        for defense in defenses:
            before, after = _cell(published, attack, defense), _cell(replayed, attack, defense)
            if before != after:
                differing.append(Difference(matrix, attack, defense, before, after))
    return len(attacks) * len(defenses), differing


def _cell(frame: pd.DataFrame, attack: str, defense: str) -> str:
    return str(frame.at[attack, defense]) if attack in frame.index and defense in frame.columns else ABSENT
