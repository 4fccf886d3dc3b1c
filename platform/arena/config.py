"""Settings from the environment (prefix ``ARENA_``) and an optional ``.env`` file.

Everything an organizer may want to change between machines lives here, so that the
code never reads ``os.environ`` itself and tests can build a ``Settings`` directly.
"""

from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class EpsilonSchedule(StrEnum):
    """Which epsilons each batch is attacked at."""

    ALL = "all"  # every epsilon on every batch: the epsilon curves see every image at every epsilon
    ROUND_ROBIN = "round_robin"  # batch k at the k-th epsilon, cyclically: the 2017 final round's way

    def of_batch(self, epsilons: list[int], index: int) -> list[int]:
        """The epsilons the batch at ``index`` is attacked at."""
        if self is EpsilonSchedule.ALL or not epsilons:
            return list(epsilons)
        return [epsilons[index % len(epsilons)]]

    def per_batch(self, epsilons: list[int]) -> int:
        """Attack jobs one attack has per batch."""
        return len(epsilons) if self is EpsilonSchedule.ALL else min(1, len(epsilons))


class SandboxLimits(BaseSettings):
    """Resource limits for every container that runs submitted code."""

    model_config = SettingsConfigDict(env_prefix="ARENA_SANDBOX_", env_file=".env", extra="ignore")

    memory: str = Field("2g", description="Memory limit; swap is disabled by setting memory+swap to the same value.")
    cpus: float = Field(1.0, description="CPU cores a container may use.")
    pids: int = Field(256, description="Maximum number of processes and threads (under runsc: gVisor's own host tasks).")
    tmpfs_size: str = Field("256m", description="Size of the writable /tmp.")
    max_output_bytes: int = Field(512 * 2**20, description="Output directory size at which the run is killed.")
    max_output_files: int = Field(10_000, description="Output file count at which the run is killed.")
    max_log_bytes: int = Field(2**20, description="Container log size kept by the engine.")
    user: str = Field("65534:65534", description="Non-root uid:gid the submission runs as.")
    runtime: str | None = Field(None, description="OCI runtime, e.g. runsc for gVisor; engine default when unset.")
    gpu: bool = Field(False, description="Give containers the host's GPUs and run submissions' container_gpu images.")
    host_pipes: bool = Field(
        True, description="Carry the query track's channel over host named pipes where the runtime opens them (runc; "
        "runsc registered with --host-fifo=open); false: over the engine's attach streams, slower.",
    )


class Settings(BaseSettings):
    """Arena's configuration. Unset values get defaults that suit one machine."""

    model_config = SettingsConfigDict(env_prefix="ARENA_", env_file=".env", extra="ignore")

    data_dir: Path = Field(Path("data"), description="Where the database, images and submissions are kept.")
    database_url: str | None = Field(None, description="SQLAlchemy URL; a SQLite file in data_dir when unset.")
    broker_url: str | None = Field(None, description="Celery broker; jobs run in-process when unset.")
    store_url: str | None = Field(
        None, description="An S3 bucket for images, code archives and results bundles (s3://BUCKET or "
        "s3://BUCKET/PREFIX), shared by every host; files under data_dir when unset.",
    )
    store_endpoint: str | None = Field(None, description="The S3 server's URL (e.g. http://host:8333); AWS when unset.")
    store_access_key: str | None = Field(None, description="The S3 access key; boto3's own lookup when unset.")
    store_secret_key: SecretStr | None = Field(None, description="The S3 secret key; boto3's own lookup when unset.")
    store_region: str = Field("us-east-1", description="The S3 region requests are signed for.")
    cache_bytes: int = Field(
        10 * 2**30, ge=0, description="Bytes of fetched objects a host keeps under data_dir/cache (least recently "
        "used removed first), with store_url set; unpacked code is kept besides.",
    )
    full_log_bytes: int = Field(
        2**20, ge=1, description="The most bytes of a container run's full log kept for its team and organizers to "
        "download (the engine keeps at most ARENA_SANDBOX_MAX_LOG_BYTES of it); a longer one is cut, with a line "
        "saying so.",
    )
    smtp_url: str | None = Field(None, description="Mail server (smtp://host:port) for the teams' notices: a dry run's "
                                 "verdict, a round published; no mail when unset.")
    mail_from: str = Field("arena@localhost", description="The From address of the teams' notices.")
    webhook_url: str | None = Field(None, description="Where every notice is also posted as JSON, for the organizers; "
                                    "none when unset.")
    epsilons: Annotated[list[int], NoDecode] = Field([2, 4, 8, 16], description="The L-infinity budgets new rounds get (each round keeps its own).")
    eps_schedule: EpsilonSchedule = Field(
        EpsilonSchedule.ALL,
        description="The schedule new rounds get (each round keeps its own): all: every epsilon on every batch; "
        "round_robin: batch k at the k-th epsilon, as the 2017 final round ran (a quarter of the container work with "
        "four epsilons, scored per epsilon as ever).",
    )
    seconds_per_image: float = Field(5.0, description="The time limit per image new rounds get (each round keeps its own; "
                                     "500 s per 100 images in 2017).")
    batch_size: int = Field(100, description="Images per batch when a dataset is imported.")
    concurrency: int = Field(2, description="Container runs at once in the in-process executor.")
    pack_seconds: float = Field(
        60.0,
        description="Target length of one container run: batches are packed until their measured time reaches it "
        "(start-up and model loading are paid once per run); 0 runs one batch per container.",
    )
    lease_seconds: float = Field(
        60.0, description="A running job's lease; a heartbeat renews it, so it runs out only when its worker is gone."
    )
    prepare_seconds: float = Field(
        1800.0, gt=0, description="How long a host may take to make a run's code and image present (a download, a "
        "registry pull) while its jobs' leases are renewed; past it they go to the reaper.",
    )
    queue_lease_seconds: float = Field(
        600.0, description="How long a job may wait in the broker's queue before it is queued again (a lost message)."
    )
    visibility_timeout: int = Field(
        12 * 3600, description="Redis visibility timeout: longer than the longest container run, or runs happen twice."
    )
    gpu_queue: bool = Field(
        False, description="Send packs of submissions that name a container_gpu to the gpu queue (workers started with --gpu)."
    )
    database_retry_seconds: float = Field(
        300.0, description="How long a run waits for an unreachable database before it fails (results are kept meanwhile)."
    )
    max_attempts: int = Field(3, description="Platform failures after which a job is left in error, not retried.")
    max_pack_images: int = Field(2000, description="Most images in one container run.")
    allowed_images: Annotated[list[str], NoDecode] = Field(
        [], description="Container images submissions may use; any image when empty."
    )
    max_archive_bytes: int = Field(2 * 2**30, description="Largest total size an archive may unpack to.")
    max_archive_files: int = Field(10_000, description="Most files an archive may hold.")
    organizer_token: SecretStr | None = Field(
        None, description="The organizers' credential for the web app; `arena web` makes one up and prints it when unset."
    )
    max_upload_bytes: int = Field(256 * 2**20, description="Largest archive the web app accepts in one upload.")
    session_hours: float = Field(
        24.0, gt=0, description="How long a browser login lasts; the session cookie carries a random id, never the token."
    )
    secure_cookies: bool = Field(
        False, description="Always mark the session cookie Secure; it is anyway when the request came over HTTPS."
    )
    login_max_failures: int = Field(
        10, ge=1, description="Wrong credentials from one client address, within login_window_seconds, after which "
        "it is answered 429 (logins and Bearer tokens alike) until the window has passed.",
    )
    login_window_seconds: float = Field(300.0, gt=0, description="The window login_max_failures is counted over.")
    body_idle_seconds: float = Field(
        60.0, gt=0, description="How long the web app waits for the next part of a request body before answering 408."
    )
    registrations_per_hour: int = Field(
        5, ge=1, description="Teams one client address may sign up in an hour, where teams may sign up themselves."
    )
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        [], description="Addresses (or networks) of the reverse proxies in front of `arena web` whose X-Forwarded-For and "
        "X-Forwarded-Proto are believed; none by default: a request's address is its connection's.",
    )
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        ["localhost", "127.0.0.1"], description="The host names visitors reach `arena web` by (the Host header; "
        "`*.example.org` for every subdomain, `*` for any); any other is answered 400, so that no answer is built "
        "from a name an attacker chose.",
    )
    registry: str | None = Field(
        None, description="The container registry (host:port) intake pushes each submission's image to; its pin is "
        "then the registry digest (host:port/repository@sha256:...), which every worker host's engine pulls when it "
        "lacks it. Unset: pins are the engine's image ids, and each worker host is given the images by hand.",
    )
    serving_start_seconds: float = Field(
        120.0, description="How long a served defense of the query track may take to load and say ready."
    )
    query_seconds_per_image: float = Field(
        600.0, description="The time limit of a query-track attack per image (its queries' answers included).",
    )
    debian_mirror: str = Field("http://deb.debian.org/debian", description="Where debootstrap fetches base-image packages.")
    sandbox: SandboxLimits = Field(default_factory=SandboxLimits)

    @field_validator("epsilons", "allowed_images", "trusted_proxies", "allowed_hosts", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        """Accept ``2,4,8,16`` in the environment, which is what people type."""
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("epsilons")
    @classmethod
    def _epsilons_in_range(cls, value: list[int]) -> list[int]:
        bad = [eps for eps in value if not 0 <= eps <= 255]
        if bad:
            raise ValueError(f"epsilons must lie in 0..255, got {bad}")
        return sorted(set(value))

    @field_validator("organizer_token", "store_url", "store_endpoint", "store_access_key", "store_secret_key", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        """Compose passes ``ARENA_ORGANIZER_TOKEN=`` (and the like) when the variable is not set."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("store_url")
    @classmethod
    def _names_a_bucket(cls, value: str | None) -> str | None:
        if value is not None and not (value.startswith("s3://") and value[len("s3://"):].strip("/")):
            raise ValueError(f"must read s3://BUCKET or s3://BUCKET/PREFIX, not {value!r}")
        return value

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'arena.db').resolve()}"

    @property
    def store_dir(self) -> Path:
        """Content-addressed PNG files (clean and adversarial images)."""
        return self.data_dir / "store"

    @property
    def submissions_dir(self) -> Path:
        """Unpacked submission code, one folder per content hash."""
        return self.data_dir / "submissions"

    @property
    def cache_dir(self) -> Path:
        """This host's copies of objects fetched from the object store (``store_url``)."""
        return self.data_dir / "cache"

    @property
    def work_dir(self) -> Path:
        """Scratch folders for container runs; emptied after each run."""
        return self.data_dir / "work"

    def time_limit(self, images: int) -> float:
        """Seconds a run over ``images`` images may take."""
        return self.seconds_per_image * images


@lru_cache
def get_settings() -> Settings:
    return Settings()
