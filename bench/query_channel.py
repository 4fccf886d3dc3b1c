"""The query track's channel: what Arena adds per query, against the same defense in-process.

Per query of 1 image and of a batch of N images (``--batches``), medians, under each
runtime asked for:

- in-process: the sample decoder's ``classify`` called on the pixels (the model alone);
- served: Arena asks the served decoder (``ServedDefense.classify``): Arena -> defense -> Arena;
- channel, instant: an attack container's queries answered by an instant in-process
  classifier: attack -> Arena -> attack, the broker's checks and counts included;
- channel, served: the whole path, attack -> Arena -> served decoder -> Arena -> attack,
  timed inside the attack container.

Platform overhead per query = channel, served - in-process (N images' worth), and per image
that over N. Images per second are N / the channel's time, as one attack and one defense run
at once (one pair per core pair). Each
runtime is measured over both transports (``arena.sandbox.pipes``): host named pipes where
the engine's registration of the runtime allows them, and the engine's attach streams,
the baseline, in the same invocation; the last column is the pipes' time over the streams'.

    .venv/bin/python bench/query_channel.py [--queries 500] [--runtimes runc,runsc] [--batches 1,10]
"""

import argparse
import importlib.util
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from arena import REPO_ROOT, db
from arena.config import SandboxLimits, Settings
from arena.intake.metadata import Metadata
from arena.sandbox import containers, pipes
from arena.sandbox.attached import attached
from arena.sandbox.query_channel import QueryChannel
from arena.sandbox.serving import served

DECODER = REPO_ROOT / "submissions" / "samples" / "decoder"

#: The attack side: QUERIES queries of BATCH images each on one input, its per-query median on stderr.
ATTACK = """
import os, statistics, sys, time
from pathlib import Path
name = sorted(p.name for p in Path(sys.argv[1]).glob("*.png"))[0]
batch = int(sys.argv[4])
images = (bytes(range(256)) * (299 * 299 * 3 // 256) + bytes(299 * 299 * 3 % 256)) * batch
times = []
for _ in range(int(sys.argv[3])):
    start = time.perf_counter()
    view = memoryview(f"query {name} {batch}\\n".encode() + images)
    while view:
        view = view[os.write(1, view):]
    sys.stdin.buffer.readline()
    times.append(time.perf_counter() - start)
print(f"median {statistics.median(times) * 1000:.3f}", file=sys.stderr)
"""


def _in_process(image: np.ndarray, count: int) -> float:
    spec = importlib.util.spec_from_file_location("decoder_defense", DECODER / "defense.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    times = []
    for _ in range(count):
        start = time.perf_counter()
        module.classify(np.frombuffer(image.tobytes(), np.uint8).reshape(299, 299, 3))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _served(settings: Settings, code, image: bytes, count: int, batch: int) -> float:
    with served(settings, code, 300, 5.0) as defense:
        times = []
        for _ in range(count):
            start = time.perf_counter()
            defense.classify([image] * batch)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def _channel(settings: Settings, scratch: Path, classify, count: int, batch: int) -> float:
    code_dir, inputs = scratch / "attack", scratch / "inputs"
    code_dir.mkdir(exist_ok=True)
    inputs.mkdir(exist_ok=True)
    (code_dir / "attack.py").write_text(ATTACK)
    (inputs / "a.png").write_bytes(b"")
    mounts = [containers.Mount(code_dir, "/code"), containers.Mount(inputs, "/input_images")]
    command = ["python3", "attack.py", "/input_images", "-", str(count), str(batch)]
    with attached("arena/python:bookworm", command, mounts, 300, settings.sandbox, settings.work_dir) as attack:
        QueryChannel(attack, classify, ["a.png"], count * batch).serve()
        run = attack.finish(time.monotonic() + 10)
    return float(run.log_tail.split("median ")[1].split()[0]) / 1000


def _measured(runtime: str, pipes: bool, image: np.ndarray, queries: int, batch: int) -> tuple[float, float, float]:
    """Served, channel with an instant classifier, channel with the served decoder: seconds per query."""
    with tempfile.TemporaryDirectory() as scratch:
        settings = Settings(data_dir=Path(scratch) / "arena",
                            sandbox=SandboxLimits(runtime=None if runtime == "runc" else runtime, host_pipes=pipes))
        db.upgrade(settings)
        code = Metadata.read(DECODER).code(DECODER)
        served_s = _served(settings, code, image.tobytes(), queries, batch)
        instant = _channel(settings, Path(scratch), lambda images: [1] * len(images), queries, batch)
        with served(settings, code, 300, 5.0) as defense:
            whole = _channel(settings, Path(scratch), defense.classify, queries, batch)
    return served_s, instant, whole


def main(queries: int, runtimes: list[str], batches: list[int]) -> None:
    image = np.random.default_rng(0).integers(0, 256, (299, 299, 3), dtype=np.uint8)
    model = _in_process(image, queries)
    print(f"{queries} queries each; medians in ms a query; in-process decoder: {model * 1000:.3f} an image")
    print("| runtime | transport | images a query | served (Arena -> defense -> Arena) | channel, instant classifier "
          "| channel, served decoder | platform overhead a query | a image | images/s | over the streams |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for runtime in runtimes:
        client = containers.docker_client()
        limits = SandboxLimits(runtime=None if runtime == "runc" else runtime)
        transports = [("pipes", True)] if pipes.carries(containers.engine_info(client), limits) else []
        for batch in batches:
            results = {name: _measured(runtime, flag, image, queries, batch)
                       for name, flag in [("streams", False), *transports]}
            for name, (served_s, instant, whole) in results.items():
                overhead = whole - model * batch  # the model's own time, N images in-process, taken out
                print(f"| {runtime} | {name} | {batch} | {served_s * 1000:.3f} | {instant * 1000:.3f} "
                      f"| {whole * 1000:.3f} | {overhead * 1000:.3f} | {overhead * 1000 / batch:.3f} "
                      f"| {batch / whole:.0f} | {whole / results['streams'][2]:.2f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--runtimes", default="runc,runsc")
    parser.add_argument("--batches", default="1,10", help="images a query, one measurement each")
    arguments = parser.parse_args()
    main(arguments.queries, arguments.runtimes.split(","), [int(b) for b in arguments.batches.split(",")])
