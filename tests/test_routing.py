"""GPU routing, without a GPU: which queue a pack goes to, which image runs, what the
container is given. (No GPU host is available to run it for real; see workers/README.md.)"""

from sqlalchemy import select

from arena.config import SandboxLimits
from arena.db import transaction
from arena.execution.broker import query_queue_of, queue_of
from arena.execution.pack_run import Pack
from arena.intake.metadata import Metadata
from arena.models import (
    AttackJob,
    Batch,
    QueryJob,
    SubmissionKind,
)
from arena.sandbox.containers import run_options
from factories import add_submission, synth_dataset


def test_gpu_hosts_get_device_requests_and_the_gpu_image(tmp_path):
    cpu = run_options(SandboxLimits(), [], time_limit=10)
    gpu = run_options(SandboxLimits(gpu=True), [], time_limit=10)
    assert "device_requests" not in cpu
    assert gpu["device_requests"][0]["Capabilities"] == [["gpu"]] and gpu["network_mode"] == "none"
    code = Metadata(type="defense", container="a/cpu:1", container_gpu="a/gpu:1", entry_point="x").code(tmp_path)
    assert code.image() == "a/cpu:1" and code.image(gpu=True) == "a/gpu:1"
    plain = Metadata(type="defense", container="a/cpu:1", entry_point="x").code(tmp_path)
    assert plain.image(gpu=True) == "a/cpu:1"
    pinned = code.pinned({"container": "sha256:c", "container_gpu": "sha256:g"})
    assert (pinned.image(), pinned.image(gpu=True), pinned.tag(gpu=True)) == ("sha256:c", "sha256:g", "a/gpu:1")


def test_packs_of_gpu_submissions_go_to_the_gpu_queue(settings):
    synth_dataset(settings, 10, batch_size=10)
    with transaction(settings) as session:
        batch_id = session.scalar(select(Batch.id))
        ids = {}
        for name, meta in (("on_gpu", {"container_gpu": "x/gpu:1"}), ("cpu_only", {})):
            submission = add_submission(session, name, meta={"container": "x/cpu:1", **meta})
            job = AttackJob(submission=submission, batch_id=batch_id, epsilon=4)
            session.add(job)
            session.flush()
            ids[name] = job.id
    assert queue_of(settings, Pack("attack", (ids["on_gpu"],))) == "cpu"  # routing off by default
    settings.gpu_queue = True
    assert queue_of(settings, Pack("attack", (ids["on_gpu"],))) == "gpu"
    assert queue_of(settings, Pack("attack", (ids["cpu_only"],))) == "cpu"


def test_a_query_job_goes_to_the_gpu_queue_when_either_side_wants_a_gpu(settings):
    synth_dataset(settings, 10, batch_size=10)
    gpu, cpu = {"container": "x/cpu:1", "container_gpu": "x/gpu:1"}, {"container": "x/cpu:1"}
    with transaction(settings) as session:
        batch_id = session.scalar(select(Batch.id))
        jobs = {}
        for name, attack_meta, defense_meta in (("attack", gpu, cpu), ("defense", cpu, gpu), ("neither", cpu, cpu)):
            attack = add_submission(session, f"q-{name}", SubmissionKind.QUERY_ATTACK, meta=attack_meta)
            defense = add_submission(session, f"d-{name}", SubmissionKind.DEFENSE,
                                     meta={**defense_meta, "serving_entry_point": "s.sh"})
            job = QueryJob(attack=attack, defense=defense, batch_id=batch_id)
            session.add(job)
            session.flush()
            jobs[name] = job.id
    assert {query_queue_of(settings, job_id) for job_id in jobs.values()} == {"cpu"}  # routing off by default
    settings.gpu_queue = True
    assert {name: query_queue_of(settings, job_id) for name, job_id in jobs.items()} == \
        {"attack": "gpu", "defense": "gpu", "neither": "cpu"}
