"""Hostile code at run time, taken in through intake and run in the shared tournament.

Most cases are sleepers: honest in the dry run (so they are accepted), hostile in the
tournament, which is where a cheater gains most. Each must end with its jobs done, the
attempt recording what happened, its own results replaced or flagged as the rules say,
and every other submission's results unchanged.
"""

from dataclasses import dataclass

import pytest

from arena.models import ClassificationProblem, JobStatus, SubmissionStatus
from hostile.tournament import (
    ATTACK_GUARD,
    BATCH,
    DEFENSE_GUARD,
    MAX_OUTPUT_FILES,
    RUNTIMES,
    attack_outcome,
    defense_outcome,
    disqualify,
    enter,
)

pytestmark = [pytest.mark.docker, pytest.mark.parametrize("runtime", RUNTIMES)]
HOSTILE_EPSILON = 4

#: Writes one PNG per input with python3 in the submission's image; PRODUCE(pixels, eps) makes it.
PNG_WRITER = '''
import os, sys, zlib, struct
import numpy as np
from PIL import Image
src, dst, eps = sys.argv[1], sys.argv[2], int(sys.argv[3])
for name in sorted(n for n in os.listdir(src) if n.endswith(".png")):
    pixels = np.asarray(Image.open(os.path.join(src, name))).astype(int)
    out = os.path.join(dst, name)
    PRODUCE
'''


def png_case(produce: str) -> dict[str, str]:
    return {"writer.py": PNG_WRITER.replace("PRODUCE", produce)}


#: A PNG that claims 60000x60000 pixels, with a real deflate stream of zero rows behind it.
PNG_BOMB = (
    "rows = zlib.compress(b'\\0' * (1 + 60000) * 2000, 9)\n"
    "    chunk = lambda kind, data: struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))\n"
    "    open(out, 'wb').write(b'\\x89PNG\\r\\n\\x1a\\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', 60000, 60000, 8, 0, 0, 0, 0))"
    " + chunk(b'IDAT', rows) + chunk(b'IEND', b''))"
)


@dataclass(frozen=True)
class AttackCase:
    name: str
    script: str  # after the sleeper guard
    expect: str  # must appear in the attempts' record (exit code, time-out, kill reason, log)
    missing: int = 0  # outputs replaced by the clean image, of 2 * BATCH
    wrong_size: int = 0  # resized, as in 2017
    converted: int = 0  # converted to an RGB PNG, as in 2017
    clipped: int = 0
    files: dict[str, str] | None = None
    #: What runsc records instead, where gVisor's outcome differs (docs/security.md, "gVisor").
    under_gvisor: str | None = None
    hangs: bool = False  # runs until the time limit: one batch per container keeps that short

    def expected(self, runtime: str | None) -> str:
        return self.under_gvisor if runtime == "runsc" and self.under_gvisor else self.expect


N = 2 * BATCH
ATTACKS = [
    # runc: forks fail at the pids limit and the shell sleeps until the time limit. runsc: the
    # limit counts gVisor's own host threads and processes, and at it gVisor's kernel cannot
    # start the next process and ends the whole sandbox at once, with its exit code 2.
    AttackCase("fork_bomb", "b() { b | b & }; b\nsleep 600\n", "timed_out=True", missing=N, under_gvisor="exit=2",
               hangs=True),
    AttackCase("memory_bomb", "python3 -c \"x = b'1' * 2**30\"\n", "exit=137", missing=N),
    AttackCase("cpu_spin", "while :; do :; done\n", "timed_out=True", missing=N, hangs=True),
    AttackCase("sleep_forever", "sleep 100000\n", "timed_out=True", missing=N, hangs=True),
    AttackCase("ignore_sigterm", "trap '' TERM INT HUP\nwhile :; do sleep 1; done\n", "timed_out=True", missing=N,
               hangs=True),
    AttackCase("huge_output", 'cat /dev/zero > "$2/fill"\n', "output grew past", missing=N),
    AttackCase("many_files", 'i=0; while :; do : > "$2/extra$i"; i=$((i+1)); done\n',
               f"more than {MAX_OUTPUT_FILES} files", missing=N),
    AttackCase("huge_logs", 'yes "hostile log line" | head -c 30000000\ncp "$1"/*.png "$2"/\n', "hostile log line"),
    AttackCase("exit_nonzero", "echo 'giving up' >&2\nexit 7\n", "exit=7", missing=N),
    AttackCase("partial_outputs", 'cp "$(find "$1" -name "*.png" | head -1)" "$2"/\nexit 1\n', "exit=1", missing=N - 2),
    AttackCase("symlink_outputs", 'for f in "$1"/*.png; do ln -s /etc/passwd "$2/$(basename "$f")"; done\n',
               "outputs missing or unreadable", missing=N),
    AttackCase("hardlink_to_inputs", 'for f in "$1"/*.png; do ln "$f" "$2/$(basename "$f")" || echo LINK REFUSED; done\n',
               "LINK REFUSED", missing=N),
    AttackCase("png_bomb", 'exec python3 writer.py "$@"\n', "decompression bomb", missing=N, files=png_case(PNG_BOMB)),
    AttackCase("corrupt_png", 'exec python3 writer.py "$@"\n', "corrupt image", missing=N,
               files=png_case("open(out, 'wb').write(b'\\x89PNG\\r\\n\\x1a\\n' + os.urandom(500))")),
    AttackCase("wrong_size", 'exec python3 writer.py "$@"\n', "resized to 299x299 (bicubic) as in 2017", wrong_size=N,
               clipped=N, files=png_case("Image.new('RGB', (300, 300)).save(out)")),
    # The synthetic images are grey: their red channel as an L image, converted back, is the image itself.
    AttackCase("wrong_mode", 'exec python3 writer.py "$@"\n', "L PNG)", converted=N,
               files=png_case("Image.fromarray(pixels[:, :, 0].astype('uint8'), 'L').save(out)")),
    AttackCase("beyond_epsilon", 'exec python3 writer.py "$@"\n', "exit=0", clipped=N,
               files=png_case("Image.fromarray(np.clip(pixels + 3 * eps, 0, 255).astype('uint8')).save(out)")),
]


@pytest.mark.parametrize("case", ATTACKS, ids=lambda c: c.name)
def test_hostile_attack_is_contained(tournament, runtime, case: AttackCase):
    submission = enter(tournament, case.name, "attack", ATTACK_GUARD + case.script, case.files, case.hangs)
    try:
        assert submission.status is SubmissionStatus.ACCEPTED, submission.reason
        jobs, images, record = attack_outcome(tournament.settings, submission.id, HOSTILE_EPSILON)
        assert len(jobs) == 2 and all(j.status is JobStatus.DONE for j in jobs)
        assert case.expected(runtime) in record, record[-2000:]
        assert len(images) == N and all(i.linf <= HOSTILE_EPSILON for i in images)
        assert sum(i.missing for i in images) == case.missing
        assert sum(i.wrong_size for i in images) == case.wrong_size
        assert sum(i.converted is not None for i in images) == case.converted
        assert sum(i.clipped for i in images) == case.clipped
        assert len(record) < 20 * 8000  # bounded logs, whatever the submission printed
        tournament.check_unchanged()
    finally:
        disqualify(tournament.settings, submission.id)


@dataclass(frozen=True)
class DefenseCase:
    name: str
    script: str  # writes "$2" (result.csv) from the images in "$1"
    problem: ClassificationProblem
    expect: str


EACH = 'for f in "$1"/*.png; do n=$(basename "$f"); '
DEFENSES = [
    DefenseCase("garbage_csv", 'head -c 5000 /dev/urandom > "$2"\n', ClassificationProblem.MISSING,
                "are not IMAGE.png,LABEL"),
    DefenseCase("unknown_ids", EACH + 'echo "x$n,5"; done > "$2"\n', ClassificationProblem.MISSING,
                "name images that were not given"),
    DefenseCase("duplicate_ids", EACH + 'echo "$n,5"; echo "$n,6"; done > "$2"\n', ClassificationProblem.DUPLICATE,
                "image(s) duplicate"),
    # 5 MB: far past what result.csv is read to, yet under the output limit, so that the watchdog
    # never ends it first (50 MB was written within one poll under runc, not under runsc).
    DefenseCase("huge_line", 'head -c 5000000 /dev/zero | tr "\\0" 7 > "$2"\n', ClassificationProblem.MISSING,
                "only the start was read"),
    DefenseCase("labels_out_of_range", EACH + 'echo "$n,1001"; done > "$2"\n', ClassificationProblem.INVALID,
                "image(s) invalid"),
]


@pytest.mark.parametrize("case", DEFENSES, ids=lambda c: c.name)
def test_hostile_defense_answers_are_contained(tournament, case: DefenseCase):
    submission = enter(tournament, case.name, "defense", DEFENSE_GUARD + case.script)
    try:
        assert submission.status is SubmissionStatus.ACCEPTED, submission.reason
        jobs, rows, record = defense_outcome(tournament.settings, submission.id)
        assert jobs and all(j.status is JobStatus.DONE for j in jobs)
        assert case.expect in record, record[-2000:]
        given = {(r.image_id, r.adversarial_image_id) for r in rows}
        assert len(given) == len(rows)  # exactly one answer per image shown
        assert {r.problem for r in rows} == {case.problem} and all(r.label is None for r in rows)
        tournament.check_unchanged()
    finally:
        disqualify(tournament.settings, submission.id)


@pytest.mark.parametrize("kind, script, reasons", [
    # Under runc the bomb either keeps the shell busy until the time limit, or leaves it unable
    # to fork `sleep` (sh then gives up with exit code 2), depending on the machine's load; under
    # runsc gVisor ends the whole sandbox at the pids limit, the container's exit code 2. The dry
    # run's resident container reports that code too: the command's exec then either is gone or
    # reports 128, which is Docker's (the exec's status went with the sandbox), not the bomb's,
    # and is never shown (``Resident._exit_code``). Rejected every way.
    ("attack", "b() { b | b & }; b\nsleep 600\n", ("the attack timed out", "the attack exit code 2")),
    ("defense", "python3 -c \"x = b'1' * 2**30\"\n", ("the defense exit code 137",)),
], ids=["attack_fork_bomb", "defense_memory_bomb"])
def test_code_hostile_in_the_dry_run_is_rejected_with_a_reason(tournament, kind, script, reasons):
    submission = enter(tournament, f"dry_{kind}", kind, script)
    assert submission.status is SubmissionStatus.REJECTED
    assert any(reason in submission.reason for reason in reasons), submission.reason
    tournament.check_unchanged()
