"""What the platform makes of an attack's outputs, through a real container: every input
leaves with exactly one adversarial image, clipped; converted to RGB or resized as the 2017
evaluation did when it came in another mode or size; the clean image when the output is
missing, unreadable or a link."""


import numpy as np
import pytest
from sqlalchemy import select

from arena.data.images import ImageStore, encode_png, l2, linf, plain_png, read_png, sha256_bytes
from arena.db import transaction
from arena.intake.metadata import Metadata
from arena.models import Image
from arena.sandbox.attack_run import CleanInput, execute_attack
from arena.sandbox.code import SubmissionCode
from conftest import make_settings
from factories import NAMING_KEY, synth_dataset

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("engine")]

# Sorted by opaque name, image k gets behaviour k % 6.
MISCHIEF = r'''
import os, sys
import numpy as np
from PIL import Image
src, dst, eps = sys.argv[1], sys.argv[2], int(sys.argv[3])
for k, name in enumerate(sorted(n for n in os.listdir(src) if n.endswith('.png'))):
    pixels = np.asarray(Image.open(os.path.join(src, name))).astype(int)
    out = os.path.join(dst, name)
    kind = k % 6
    if kind == 0:
        Image.fromarray(np.clip(pixels + 3 * eps, 0, 255).astype('uint8')).save(out)   # beyond eps
    elif kind == 1:
        Image.fromarray(pixels.astype('uint8')).save(out[:-4] + '.PNG')                 # missing: .PNG is another name
    elif kind == 2:
        Image.new('RGB', (100, 100)).save(out)                                          # wrong size
    elif kind == 3:
        Image.fromarray(pixels[:, :, 0].astype('uint8'), 'L').save(out)                 # wrong mode
    elif kind == 4:
        os.symlink('/etc/passwd', out)                                                  # a link
    else:
        open(out, 'wb').write(b'\x89PNG not really')                                    # corrupt
'''


def _attack(tmp_path, settings, dataset, source: str) -> tuple[SubmissionCode, list[CleanInput]]:
    """``source`` as an attack in the python base image, and every image of ``dataset`` as its input."""
    code_dir = tmp_path / "code"
    code_dir.mkdir()
    (code_dir / "attack.py").write_text(source)
    (code_dir / "run_attack.sh").write_text('#!/bin/sh\nexec python3 attack.py "$@"\n')
    (code_dir / "run_attack.sh").chmod(0o755)
    metadata = Metadata(type="attack", container="arena/python:bookworm", entry_point="run_attack.sh")
    with transaction(settings) as session:
        images = session.scalars(select(Image).where(Image.dataset_id == dataset.id)).all()
        inputs = [CleanInput(i.id, i.sha256, i.target_class, i.name) for i in images]
    return metadata.code(code_dir), inputs


def test_outputs_are_judged_one_by_one(tmp_path):
    settings = make_settings(tmp_path / "arena")
    dataset = synth_dataset(settings, 12, batch_size=12)
    code, inputs = _attack(tmp_path, settings, dataset, MISCHIEF)

    outcome = execute_attack(settings, code, inputs, epsilon=4, naming_key=NAMING_KEY)

    assert outcome.run.exit_code == 0
    assert len(outcome.results) == 12
    store = ImageStore(settings.store_dir)
    clean_of = {i.image_id: i.sha256 for i in inputs}
    clipped = [r for r in outcome.results if r.clipped]
    assert len(clipped) >= 4 and all(r.linf == 4 for r in clipped)  # beyond eps, resized (grey may fit in eps)
    assert sum(r.wrong_size and r.clipped for r in outcome.results) == 2  # resized as in 2017, then clipped
    assert [r.converted for r in outcome.results if r.converted] == ["L PNG"] * 2  # converted as in 2017
    assert sum(r.missing for r in outcome.results) == 6  # missing, link and corrupt
    for result in outcome.results:
        kept = store.read_pixels(result.sha256)
        assert linf(store.read_pixels(clean_of[result.image_id]), kept) == result.linf <= 4
        assert result.l2 == pytest.approx(l2(store.read_pixels(clean_of[result.image_id]), kept))
        assert (result.l2 == 0) == (result.linf == 0)
        if result.missing:
            assert result.sha256 == clean_of[result.image_id]
    assert outcome.problems[0] == "6 of 12 outputs missing or unreadable: replaced by the clean image"
    assert "2 output(s) converted to RGB PNG as in 2017 (2 L PNG)" in outcome.notes
    assert "2 output(s) of the wrong size resized to 299x299 (bicubic) as in 2017" in outcome.notes


#: PNG files made byte for byte the same in the container and here: zlib level 0 (stored
#: blocks) leaves nothing to a library's version. Each input gets a way by its bytes' hash.
HAND_PNG = r'''
import hashlib, os, struct, sys, zlib
import numpy as np
from PIL import Image

def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

def png(pixels, extra=b""):
    rows = np.concatenate([np.zeros((pixels.shape[0], 1), np.uint8), pixels.reshape(pixels.shape[0], -1)], axis=1)
    header = struct.pack(">IIBBBBB", pixels.shape[1], pixels.shape[0], 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + extra + chunk(b"IDAT", zlib.compress(rows.tobytes(), 0))
            + chunk(b"IEND", b""))

def way(png_bytes):
    return hashlib.sha256(png_bytes).digest()[0] % 4

def output(pixels, way, eps):
    moved = np.clip(pixels.astype(int) + (3 * eps if way == 3 else eps), 0, 255).astype(np.uint8)
    if way == 1:
        return png(moved, chunk(b"tEXt", b"label\x00the true class"))  # a note for a colluding defense
    if way == 2:
        return png(moved) + b"and more after the end"
    return png(moved)  # 0: within eps; 3: beyond it

if __name__ == "__main__":
    src, dst, eps = sys.argv[1], sys.argv[2], int(sys.argv[3])
    for name in sorted(n for n in os.listdir(src) if n.endswith(".png")):
        data = open(os.path.join(src, name), "rb").read()
        pixels = np.asarray(Image.open(os.path.join(src, name)).convert("RGB"))
        open(os.path.join(dst, name), "wb").write(output(pixels, way(data), eps))
'''


def test_an_output_is_stored_as_submitted_only_when_it_is_the_image_alone_and_needs_nothing(tmp_path):
    """Within eps and nothing but the image: the very bytes the attack wrote, no encoding.
    With a text chunk or bytes after its end: the same pixels written anew, without them.
    Beyond eps: clipped, then written anew. Defenses get the same pixels either way."""
    settings = make_settings(tmp_path / "arena")
    dataset = synth_dataset(settings, 24, batch_size=24)
    code, inputs = _attack(tmp_path, settings, dataset, HAND_PNG)
    namespace: dict = {}
    exec(compile(HAND_PNG, "attack.py", "exec"), namespace)  # the attack's own functions, run here

    outcome = execute_attack(settings, code, inputs, epsilon=4, naming_key=NAMING_KEY)
    assert outcome.run.exit_code == 0 and len(outcome.results) == 24
    store = ImageStore(settings.store_dir)
    seen = set()
    for result in outcome.results:
        item = next(i for i in inputs if i.image_id == result.image_id)
        clean = store.read_pixels(item.sha256)
        way = namespace["way"](store.read_bytes(item.sha256))
        written = namespace["output"](clean, way, 4)
        stored = store.read_bytes(result.sha256)
        assert not result.missing and result.linf == 4 and result.clipped == (way == 3)
        if way == 0:
            assert stored == written  # as submitted
        else:
            assert stored != written and plain_png(stored) and b"true class" not in stored
            assert stored == encode_png(read_png(stored)) and result.sha256 == sha256_bytes(stored)
        assert np.array_equal(read_png(stored), np.clip(clean.astype(int) + 4, 0, 255))
        seen.add(way)
    assert seen == {0, 1, 2, 3}
