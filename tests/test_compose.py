"""The compose stack (PostgreSQL, Redis, migrate, Celery workers, web, flower, scheduler), built
offline from the project's images, runs the demo tournament end to end."""

import os
import re
import shutil
import subprocess

import pytest

from arena import REPO_ROOT
from arena.config import Settings
from arena.tools import base_image
from servers import free_port

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("engine")]
COMPOSE_SECONDS = 1200


def _take_down(env: dict[str, str]) -> None:
    """Take the test's stack down, as the script does when it gets to its end: after a
    time-out or an early exit nothing of it must be left running. Its own project name
    (in ``env``) makes it the test's stack only, never one of ``make compose-demo``."""
    subprocess.run(["docker-compose", "down", "-v"], cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL,
                   capture_output=True, timeout=300, check=False)


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose is not installed (scripts/setup.sh installs it)")
@pytest.mark.timeout(COMPOSE_SECONDS + 600)  # the script's limit, then the images' build and the stack taken down
def test_the_compose_stack_runs_the_demo(tmp_path):
    base_image.build(Settings(data_dir=tmp_path), ["python", "services"], say=lambda _m: None)
    base_image.build_app(say=lambda _m: None)
    data = REPO_ROOT / "data" / "compose"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    env = {**os.environ, "PWD": str(REPO_ROOT), "ARENA_WEB_PORT": str(free_port()), "ARENA_REGISTRY_PORT": str(free_port()),
           "COMPOSE_PROJECT_NAME": f"arena-test-{os.getpid()}",
           "ARENA_DEMO_IMAGES": "20"}  # one batch of 20: the whole stack at work (every job of the demo's
    # tournament, in 50 container runs), at half the time of 100 images (82 s against 43 s, built image cached)
    try:
        result = subprocess.run([str(REPO_ROOT / "scripts" / "compose-demo.sh")], cwd=REPO_ROOT, env=env,
                                stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=COMPOSE_SECONDS)
    finally:
        _take_down(env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    ran = re.search(r"ran 12 attack jobs, (\d+) query jobs and 26 defense jobs", result.stdout)
    assert ran and int(ran.group(1)) > 0, result.stdout[-3000:]  # the demo's query attacks ran on the workers too
    assert "Error matrix" in result.stdout and "smoothed_decoder" in result.stdout
    assert '"submission":"random_noise"' in result.stdout  # the web service serves the leaderboard
    assert "Task arena.run_pack" in (data / "workers.log").read_text()  # the work went through Celery workers


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose is not installed (scripts/setup.sh installs it)")
def test_every_arena_service_gets_the_sandbox_runtime():
    """ARENA_SANDBOX_RUNTIME=runsc where the stack is started reaches the workers (which run the
    sandboxes) and every other service of the app image; unset, it is empty: the engine's default."""
    def rendered(runtime: str | None) -> str:
        env = {key: value for key, value in os.environ.items() if key != "ARENA_SANDBOX_RUNTIME"}
        env |= {"PWD": str(REPO_ROOT), **({"ARENA_SANDBOX_RUNTIME": runtime} if runtime else {})}
        return subprocess.run(["docker-compose", "config"], cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=60, check=True).stdout

    with_gvisor, default = rendered("runsc"), rendered(None)
    services = with_gvisor.count("image: arena/app:latest")
    assert services >= 5 and "  worker:\n" in with_gvisor
    assert with_gvisor.count("ARENA_SANDBOX_RUNTIME: runsc") == services
    assert default.count("ARENA_SANDBOX_RUNTIME: ''") == services


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose is not installed (scripts/setup.sh installs it)")
def test_the_web_service_has_no_engine_socket_and_the_workers_do():
    """The public web process stores uploads and queues their dry runs: the engine's socket
    (root on its host) is mounted where containers run, never in ``web``, and ``web`` shares
    no folder with them: what it serves of theirs comes from the object store."""
    import yaml

    env = {**os.environ, "PWD": str(REPO_ROOT)}
    config = yaml.safe_load(subprocess.run(["docker-compose", "config"], cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL,
                                           capture_output=True, text=True, timeout=60, check=True).stdout)
    mounts = {name: " ".join(str(volume) for volume in service.get("volumes", []))
              for name, service in config["services"].items()}
    assert "docker.sock" not in mounts["web"] and "data/compose" not in mounts["web"]  # its files come from the store
    assert "docker.sock" in mounts["worker"] and "docker.sock" in mounts["scheduler"]
    # those that run sandboxes share the host's PID namespace, so that their sweeps can tell a
    # dead runner's containers (sandbox/runners.py); the web does not
    assert [config["services"][name].get("pid") for name in ("worker", "scheduler", "web")] == ["host", "host", None]
