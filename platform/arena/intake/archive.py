"""Unpacking submission archives without trusting them.

Archives come from competitors. Nothing in one may land outside the destination, link
outside it, or unpack into more bytes or files than the settings allow, nor into more than
``MAX_RATIO`` times its own size (past ``RATIO_FLOOR``), so that the bytes an upload may make
the server write follow the upload limit; a violation stops the whole extraction with a
message naming the offending member.
"""

import hashlib
import os
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from arena.errors import InputError

CHUNK = 1 << 20
#: How many times its own size an archive may unpack to: code, data and weights compress
#: between 1 and 10 times, a bomb a thousandfold. Any archive may unpack to RATIO_FLOOR.
MAX_RATIO = 100
RATIO_FLOOR = 16 * 2**20


class ArchiveError(InputError):
    """The archive is unsafe or unreadable; the message names the member and the rule."""


def _check_member_name(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or name.startswith(("/", "\\")) or (path.parts and ":" in path.parts[0]):
        raise ArchiveError(f"member {name!r} has an absolute path")
    if ".." in path.parts:
        raise ArchiveError(f"member {name!r} points outside the archive (path traversal)")
    return path


def _target(destination: Path, name: str) -> Path:
    """Where a member goes: never through a link already unpacked, never over an existing entry
    (either could redirect a later write outside the tree)."""
    parts = _check_member_name(name).parts
    current = destination
    for part in parts[:-1]:
        current = current / part
        if current.is_symlink():
            raise ArchiveError(f"member {name!r} goes through the link {current.relative_to(destination)}")
    target = current / parts[-1] if parts else destination
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise ArchiveError(f"member {name!r} appears twice")
    return target


class _Budget:
    """Counts files and bytes as they are written, so lying headers cannot bypass the limits."""

    def __init__(self, packed: int, max_bytes: int, max_files: int):
        self.packed, self.max_files = packed, max_files
        self.max_bytes = min(max_bytes, max(packed * MAX_RATIO, RATIO_FLOOR))
        self.bytes = self.files = 0

    def add_file(self, name: str) -> None:
        self.files += 1
        if self.files > self.max_files:
            raise ArchiveError(f"more than {self.max_files} files (at {name!r})")

    def add_bytes(self, count: int, name: str) -> None:
        self.bytes += count
        if self.bytes > self.max_bytes:
            raise ArchiveError(f"unpacks to more than {self.max_bytes} bytes (at {name!r}), the most an archive of "
                               f"{self.packed} bytes may unpack to: archive bomb?")


def _write(source, target: Path, name: str, executable: bool, budget: _Budget) -> None:
    """Copy one member's bytes while counting them, with plain permissions (no setuid, no owner)."""
    budget.add_file(name)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb") as sink:
        while chunk := source.read(CHUNK):
            budget.add_bytes(len(chunk), name)
            sink.write(chunk)
    target.chmod(0o755 if executable else 0o644)


def _extract_zip(path: Path, destination: Path, budget: _Budget) -> None:
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise ArchiveError(f"member {info.filename!r} is a symbolic link; links are not accepted in zip archives")
            target = _target(destination, info.filename)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            with archive.open(info) as source:
                _write(source, target, info.filename, bool(mode & 0o111), budget)


def _check_tar_link(member: tarfile.TarInfo) -> PurePosixPath:
    """The in-tree path a link points to; links that leave the tree are refused."""
    base = PurePosixPath(member.name).parent if member.issym() else PurePosixPath()
    resolved = PurePosixPath(os.path.normpath(base / member.linkname))
    if PurePosixPath(member.linkname).is_absolute() or resolved.parts[:1] == ("..",):
        raise ArchiveError(f"member {member.name!r} links outside the archive (to {member.linkname!r})")
    return resolved


def _extract_tar(path: Path, destination: Path, budget: _Budget) -> None:
    """Member by member, by hand: tarfile's own filters are missing from older 3.11 releases."""
    with tarfile.open(path) as archive:
        for member in archive:
            target = _target(destination, member.name)
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
            elif member.isfile():
                _write(archive.extractfile(member), target, member.name, bool(member.mode & 0o111), budget)
            elif member.issym():
                _check_tar_link(member)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to(member.linkname)
            elif member.islnk():
                source = destination.joinpath(*_check_tar_link(member).parts)
                if source.is_symlink() or not source.is_file():
                    raise ArchiveError(f"member {member.name!r} is a hard link to {member.linkname!r}, which is not a file before it")
                with source.open("rb") as handle:
                    _write(handle, target, member.name, os.access(source, os.X_OK), budget)
            else:
                raise ArchiveError(f"member {member.name!r} is a device, fifo or other special file")


def extract(path: Path, destination: Path, *, max_bytes: int, max_files: int) -> Path:
    """Unpack a .zip, .tar or .tar.gz into ``destination`` and return the submission root:
    the single top-level folder if there is one, else ``destination`` itself."""
    if not path.is_file():
        raise ArchiveError(f"{path} does not exist")
    destination.mkdir(parents=True, exist_ok=True)
    budget = _Budget(path.stat().st_size, max_bytes, max_files)
    try:
        if zipfile.is_zipfile(path):
            _extract_zip(path, destination, budget)
        elif tarfile.is_tarfile(path):
            _extract_tar(path, destination, budget)
        else:
            raise ArchiveError(f"{path.name} is not a .zip, .tar or .tar.gz archive")
    except ArchiveError:
        shutil.rmtree(destination, ignore_errors=True)
        raise
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
        shutil.rmtree(destination, ignore_errors=True)
        raise ArchiveError(f"{path.name} is damaged: {exc}") from None
    entries = [e for e in destination.iterdir() if e.name != "__MACOSX"]
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
        return entries[0]
    return destination


def tree_sha256(root: Path) -> str:
    """A hash of names, executable bits and contents: the same code in a zip or a tar hashes alike."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink()):
        relative = path.relative_to(root).as_posix()
        if path.is_symlink():
            digest.update(f"L {relative} {os.readlink(path)}\n".encode())
            continue
        content = hashlib.sha256(path.read_bytes()).hexdigest()
        executable = "x" if path.stat().st_mode & 0o111 else "-"
        digest.update(f"F {relative} {executable} {content}\n".encode())
    return digest.hexdigest()


def pack(folder: Path, archive: Path) -> Path:
    """Pack a submission folder into a .tar.gz in the competition format (one top-level folder)."""
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name, filter=lambda info: None if "__pycache__" in info.name else info)
    return archive
