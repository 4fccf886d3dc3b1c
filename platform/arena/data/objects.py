"""Where the installation's files live: a local folder (the default) or an S3-compatible bucket.

Images, submissions' code archives, published rounds' results bundles and container runs'
full logs are *objects*:
bytes under a key, written once and never changed, so any copy of one is as good as
another. With ``ARENA_STORE_URL`` unset they are files under the data folder, laid out as
they always were; with it set (``s3://bucket`` or ``s3://bucket/prefix``) they are objects
in that bucket, and hosts share nothing else of their files. A host reads an object through
its own bounded cache (``LruFolder``, ``ARENA_CACHE_BYTES``), so a pack's inputs cross the
network once per host, and every fetched object is checked against its sha256 before it is
used: a missing or damaged object is the platform's failure (``StoreError``), never the
submission's, and the job that needed it runs again.
"""

import hashlib
import os
import secrets
import shutil
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from arena.config import Settings
from arena.errors import PlatformError

#: The user metadata every object put here carries: the sha256 of its bytes.
HASH_FIELD = "sha256"
CHUNK = 1 << 20


class StoreError(PlatformError):
    """An object the platform needs cannot be read or written (the store unreachable, the
    object missing or damaged): the platform's failure, so the job is retried elsewhere or later."""


class ObjectMissing(StoreError):
    """The store has no object under the key."""


class ObjectCorrupted(StoreError):
    """The object's bytes do not hash to what they must."""


class Objects(Protocol):
    """Objects under keys (``ab/abcd....png``, ``abcd....tar``): written whole, never changed."""

    def path(self, key: str, sha256: str | None = None) -> Path:
        """A local file holding the object, to read or hardlink, never to change."""

    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``; a second put of the same key is harmless."""

    def put_file(self, key: str, source: Path) -> None:
        """Store the file ``source`` under ``key``, taking it (``source`` is moved or removed)."""

    def exists(self, key: str) -> bool: ...


def _digest_of(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _scratch(folder: Path, key: str) -> Path:
    """A scratch file name beside where ``key`` goes: a rename then publishes it whole."""
    return folder / f".{Path(key).name}.{secrets.token_hex(8)}"


@dataclass(frozen=True)
class LocalObjects:
    """Objects as files under one folder: the key is the file's path below it. A file is
    written through a scratch file and a rename, so a reader never sees half of one and two
    writers of the same content agree."""

    root: Path

    def path(self, key: str, sha256: str | None = None) -> Path:
        """Where the object's file is (whether or not it is there: callers that must have it check)."""
        return self.root / key

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def put(self, key: str, data: bytes) -> None:
        target = self.path(key)
        if target.exists():
            return
        temporary = _scratch(target.parent, key)
        try:
            handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        except FileNotFoundError:  # the first object under this prefix: checked only then, not per object
            target.parent.mkdir(parents=True, exist_ok=True)
            handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        try:
            with os.fdopen(handle, "wb") as file:
                os.fchmod(handle, 0o644)  # containers read inputs as a non-root user, whatever the umask
                file.write(data)
            os.replace(temporary, target)
        except BaseException:  # a full disk, say: no half-written file left behind
            temporary.unlink(missing_ok=True)
            raise

    def put_file(self, key: str, source: Path) -> None:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)


class LruFolder:
    """A host's bounded cache of fetched objects: files under ``folder``, the least recently
    used removed once their sizes add up past ``limit`` bytes. Recency is each file's
    modification time, so a restarted process keeps the order; the sizes are counted once per
    process, when the folder is first used. A removed file that a run has hardlinked into its
    scratch folder stays readable there."""

    def __init__(self, folder: Path, limit: int) -> None:
        self.folder, self.limit = folder, limit
        self._sizes: OrderedDict[str, int] | None = None
        self._total = 0
        self._lock = threading.Lock()

    def _index(self) -> OrderedDict[str, int]:
        if self._sizes is None:
            found = []
            for parent, _folders, files in os.walk(self.folder):
                for path in (Path(parent, name) for name in files if not name.startswith(".")):  # not scratch files
                    try:
                        status = path.stat()
                    except FileNotFoundError:  # removed meanwhile by another process of this host
                        continue
                    found.append((status.st_mtime_ns, str(path.relative_to(self.folder)), status.st_size))
            self._sizes = OrderedDict((key, size) for _time, key, size in sorted(found))
            self._total = sum(self._sizes.values())
        return self._sizes

    @property
    def total(self) -> int:
        """Bytes the cache holds, as this process counts them."""
        with self._lock:
            self._index()
            return self._total

    def get(self, key: str) -> Path | None:
        """The cached file, marked as just used; None when the cache lacks it."""
        path = self.folder / key
        with self._lock:
            sizes = self._index()
            try:
                os.utime(path)
            except FileNotFoundError:  # never here, or removed by another process on this host
                self._total -= sizes.pop(key, 0)
                return None
            if key not in sizes:  # another process of this host fetched it
                sizes[key] = path.stat().st_size
                self._total += sizes[key]
            sizes.move_to_end(key)
        return path

    def scratch(self, key: str) -> Path:
        """A scratch file for ``key``'s bytes, on the cache's file system, for ``add``."""
        target = self.folder / key
        target.parent.mkdir(parents=True, exist_ok=True)
        return _scratch(target.parent, key)

    def add(self, key: str, source: Path) -> Path:
        """Take the file ``source`` in under ``key``, then remove the least recently used
        files until the cache fits its limit (never the one just added)."""
        target = self.folder / key
        source.chmod(0o644)  # hardlinked into the sandbox's input, read by a non-root user
        os.replace(source, target)
        size = target.stat().st_size
        with self._lock:
            sizes = self._index()
            self._total += size - sizes.pop(key, 0)
            sizes[key] = size
            while self._total > self.limit and len(sizes) > 1:
                oldest, size = sizes.popitem(last=False)
                (self.folder / oldest).unlink(missing_ok=True)
                self._total -= size
        return target


def _missing(error: ClientError) -> bool:
    """Whether S3 answered that there is no such object (a HEAD's answer has no body: only its status)."""
    return error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404")


@dataclass(frozen=True)
class S3Objects:
    """Objects in an S3 bucket under ``prefix``, read through a host's ``LruFolder``. Each
    object carries the sha256 of its bytes (``HASH_FIELD``); what is fetched is checked
    against it, and against the hash the caller expects (an image's key is its hash)."""

    client: object  # a boto3 S3 client: safe to share between threads
    bucket: str
    prefix: str
    cache: LruFolder

    def _key(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def _cached(self, key: str) -> str:
        return f"{self.bucket}/{self._key(key)}"

    def path(self, key: str, sha256: str | None = None) -> Path:
        if (cached := self.cache.get(self._cached(key))) is not None:
            return cached
        scratch = self.cache.scratch(self._cached(key))
        try:
            self._fetch(key, scratch, sha256)
            return self.cache.add(self._cached(key), scratch)
        finally:
            scratch.unlink(missing_ok=True)

    def _fetch(self, key: str, target: Path, sha256: str | None) -> None:
        where = f"s3://{self.bucket}/{self._key(key)}"
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            digest = hashlib.sha256()
            with target.open("xb") as file:
                for chunk in answer["Body"].iter_chunks(CHUNK):
                    digest.update(chunk)
                    file.write(chunk)
        except ClientError as exc:
            if _missing(exc):
                raise ObjectMissing(f"the object store has no {where}, which the database references: the store "
                                    "is damaged or was never filled (restore it from a backup)") from None
            raise StoreError(f"the object store refused to read {where}: {exc}") from None
        except (BotoCoreError, OSError) as exc:
            raise StoreError(f"cannot fetch {where}: {exc}") from None
        recorded = answer.get("Metadata", {}).get(HASH_FIELD)
        for expected in {sha256, recorded} - {None}:
            if digest.hexdigest() != expected:
                raise ObjectCorrupted(f"{where} is damaged: its bytes hash to {digest.hexdigest()}, not {expected}")
        if sha256 is None and recorded is None:
            raise ObjectCorrupted(f"{where} carries no {HASH_FIELD} to check it against: it was not written by Arena")

    def exists(self, key: str) -> bool:
        if self.cache.get(self._cached(key)) is not None:
            return True
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if _missing(exc):
                return False
            raise StoreError(f"the object store refused to look up s3://{self.bucket}/{self._key(key)}: {exc}") from None
        except BotoCoreError as exc:
            raise StoreError(f"cannot reach the object store: {exc}") from None
        return True

    def put(self, key: str, data: bytes) -> None:
        self._put(key, data, hashlib.sha256(data).hexdigest())

    def put_file(self, key: str, source: Path) -> None:
        """Upload ``source``, then keep it as this host's cached copy: it is known sound."""
        with source.open("rb") as file:
            self._put(key, file, _digest_of(source))
        scratch = self.cache.scratch(self._cached(key))
        shutil.move(source, scratch)  # onto the cache's file system, whence a rename takes it in
        self.cache.add(self._cached(key), scratch)

    def _put(self, key: str, body, sha256: str) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=body, Metadata={HASH_FIELD: sha256})
        except (ClientError, BotoCoreError) as exc:
            raise StoreError(f"cannot write s3://{self.bucket}/{self._key(key)}: {exc}") from None


@dataclass(frozen=True)
class Store:
    """The installation's objects by kind. ``code`` is None for the local folder, where a
    submission's code is kept as its unpacked tree (``submissions/<sha256>/``) rather than as an archive."""

    images: Objects
    code: Objects | None
    bundles: Objects
    logs: Objects


def store(settings: Settings) -> Store:
    """The store the settings name: the one place that decides where files live."""
    if settings.store_url is None:
        return Store(LocalObjects(settings.store_dir), None, LocalObjects(settings.data_dir / "downloads"),
                     LocalObjects(settings.data_dir / "logs"))
    secret = settings.store_secret_key.get_secret_value() if settings.store_secret_key else None
    return _bucket_store(settings.store_url, settings.store_endpoint, settings.store_access_key, secret,
                         settings.store_region, settings.cache_dir.resolve(), settings.cache_bytes)


def bucket_of(url: str) -> tuple[str, str]:
    """The bucket and key prefix of an ``s3://bucket[/prefix]`` URL (checked by ``Settings``)."""
    bucket, _, prefix = url.removeprefix("s3://").strip("/").partition("/")
    return bucket, f"{prefix.strip('/')}/" if prefix.strip("/") else ""


@lru_cache
def _bucket_store(url: str, endpoint: str | None, access_key: str | None, secret_key: str | None, region: str,
                  cache_folder: Path, cache_bytes: int) -> Store:
    """One client and one cache per process and configuration: the cache's count of its bytes
    is kept in memory, and a client is costly to make and safe to share between threads."""
    bucket, prefix = bucket_of(url)
    client = boto3.session.Session().client(
        "s3", endpoint_url=endpoint, aws_access_key_id=access_key, aws_secret_access_key=secret_key,
        region_name=region, config=Config(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=32),
    )
    cache = LruFolder(cache_folder / "objects", cache_bytes)
    return Store(*(S3Objects(client, bucket, f"{prefix}{kind}/", cache) for kind in ("images", "code", "bundles", "logs")))
