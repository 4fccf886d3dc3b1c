"""Submissions written the 2017 way, through real containers: what the 2017 evaluation
accepted, Arena accepts and scores as 2017 scored it, and a re-run reproduces results
that depend on which images share a run (docs/submissions.md, "What 2017 accepted")."""

import importlib.util
import io
import shutil

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import select

from arena.data.images import ImageStore, clip_to_epsilon, encode_png, sha256_bytes
from arena.db import transaction
from arena.execution import planning
from arena.execution.run import run
from arena.models import AdversarialImage, AttackJob, Image, Submission
from arena.results.scoring import Standings
from conftest import SAMPLES, make_settings
from factories import adversarial_outputs, stream_attack, submit_folder, synth_dataset, write_submission

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("engine")]
CONTAINER = {"container": "arena/python:bookworm", "container_gpu": "arena/python:bookworm"}

#: Every output a different way the 2017 evaluation read with Pillow and .convert("RGB").
MODES_ATTACK = '''
import hashlib, sys
from pathlib import Path
import numpy as np
from PIL import Image

WAYS = ["RGBA", "P", "L", "I;16", "JPEG", "RGB"]

def way(png: bytes) -> str:
    return WAYS[hashlib.sha256(png).digest()[0] % len(WAYS)]

def write(pixels: np.ndarray, png: bytes, target) -> None:
    image = Image.fromarray(pixels)
    chosen = way(png)
    if chosen == "JPEG":
        image.save(target, format="JPEG", quality=95)  # JPEG data under the .png name
    elif chosen == "I;16":
        grey = np.asarray(image.convert("L"), dtype=np.uint16) * 257
        Image.fromarray(grey).save(target, format="PNG")  # uint16: mode I;16
    elif chosen == "P":
        image.quantize(colors=256).save(target, format="PNG")
    else:
        image.convert(chosen).save(target, format="PNG")

def main(inputs, outputs, eps):
    for path in sorted(Path(inputs).glob("*.png")):
        png = path.read_bytes()
        pixels = np.asarray(Image.open(path).convert("RGB")).astype(np.int16)
        write(np.clip(pixels + int(eps), 0, 255).astype(np.uint8), png, Path(outputs) / path.name)

if __name__ == "__main__":
    main(*sys.argv[1:4])
'''

#: The sample decoder's answers, written as 2017's parser took them: a header line, ids
#: without an extension or with .jpg, an empty line, a line naming no given image.
STEMS_DEFENSE = '''
import sys
from pathlib import Path
import numpy as np
from PIL import Image
from defense import classify

def main(inputs, output):
    lines = ["ImageId,PredictedLabel", ""]
    for k, path in enumerate(sorted(Path(inputs).glob("*.png"))):
        stem = path.name[:-4]
        lines.append(f"{stem if k % 2 else stem + '.jpg'},{classify(np.asarray(Image.open(path).convert('RGB')))}")
    lines.append("not_an_input.png,5")
    Path(output).write_text("\\n".join(lines) + "\\n")
    Path(output).with_name("debug.txt").write_text("other files in /output_data are ignored")

if __name__ == "__main__":
    main(*sys.argv[1:3])
'''

def _attack(folder, source: str, entry: str = "run_attack.sh"):
    return write_submission(folder, {"type": "attack", "entry_point": entry, **CONTAINER},
                            {entry: '#!/bin/sh\nexec python3 attack.py "$@"\n', "attack.py": source})


def _as_2017(output: bytes, clean: np.ndarray, eps: int) -> np.ndarray:
    """What the 2017 evaluation made of an output: Pillow, .convert("RGB"), the clip."""
    pixels = np.asarray(PILImage.open(io.BytesIO(output)).convert("RGB"))
    return clip_to_epsilon(clean, pixels, eps)[0]


def _module(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: Ways whose bytes the host's Pillow writes exactly as the container's does; JPEG and
#: palette encoders may differ between Pillow versions, so those are checked less closely.
EXACT_WAYS = {"RGBA", "L", "I;16", "RGB"}


def test_outputs_in_any_mode_are_converted_as_2017_converted_them(tmp_path):
    settings = make_settings(tmp_path / "arena", epsilons=[8])
    dataset = synth_dataset(settings, 24, batch_size=12)
    folder = _attack(tmp_path / "modes", MODES_ATTACK)
    submission = submit_folder(settings, folder, tmp_path)
    assert submission.status.value == "accepted", submission.reason
    assert any("converted to RGB PNG as in 2017" in note for note in submission.validation_report["notes"])
    assert not run(settings).platform_errors
    attack, store, ways = _module(folder / "attack.py"), ImageStore(settings.store_dir), set()
    with transaction(settings) as session:
        rows = session.execute(select(AdversarialImage, Image).join(Image).join(AttackJob)
                               .where(Image.dataset_id == dataset.id)).all()
    assert len(rows) == 24
    for adversarial, image in rows:
        png, clean = store.read_bytes(image.sha256), store.read_pixels(image.sha256)
        way = attack.way(png)
        ways.add(way)
        assert not adversarial.missing and not adversarial.wrong_size
        assert (adversarial.converted is None) == (way == "RGB"), (way, adversarial.converted)
        assert 0 < adversarial.linf <= 8  # the output was used, not the clean image
        if way in EXACT_WAYS:
            written = io.BytesIO()
            attack.write(np.clip(clean.astype(np.int16) + 8, 0, 255).astype(np.uint8), png, written)
            # an RGB output inside the ball is kept as the attack wrote it; the others are converted, then encoded
            expected = written.getvalue() if way == "RGB" else encode_png(_as_2017(written.getvalue(), clean, 8))
            assert adversarial.sha256 == sha256_bytes(expected), way
            assert np.array_equal(store.read_pixels(adversarial.sha256), _as_2017(written.getvalue(), clean, 8)), way
    assert len(ways) >= 4  # the synthetic images spread over the ways


def test_result_csv_ids_as_the_2017_parser_read_them(tmp_path):
    settings = make_settings(tmp_path / "arena", epsilons=[4, 16])
    dataset = synth_dataset(settings, 20, batch_size=10)
    stems = tmp_path / "stems"
    shutil.copytree(SAMPLES / "decoder", stems)
    (stems / "stems.py").write_text(STEMS_DEFENSE)
    (stems / "run_defense.sh").write_text('#!/bin/sh\nexec python3 stems.py "$@"\n')
    accepted = [submit_folder(settings, SAMPLES / name, tmp_path) for name in ("random_noise", "decoder")]
    accepted.append(submit_folder(settings, stems, tmp_path))
    assert all(s.status.value == "accepted" for s in accepted), [s.reason for s in accepted]
    notes = accepted[-1].validation_report["notes"]
    assert "2 line(s) name images that were not given: skipped, as in 2017" in notes  # the header, the stranger
    assert not run(settings).platform_errors
    with transaction(settings) as session:
        standings = Standings.compute(session, dataset)
    for value in ("error", "correct"):
        matrix = standings.matrix(value)
        assert matrix["stems"].equals(matrix["decoder"]) and matrix["decoder"].sum() > 0


def test_results_that_depend_on_the_run_are_the_same_on_a_rerun(tmp_path):
    """Packs are fixed by the submission and the dataset, input names by a keyed hash: an
    attack drawing one random stream over the images of its run gives the same outputs,
    hence the same matrix, on a re-run (they changed from run to run before)."""
    settings = make_settings(tmp_path / "arena", epsilons=[4, 16], pack_seconds=600)
    dataset = synth_dataset(settings, 40, batch_size=10)
    stream = submit_folder(settings, stream_attack(tmp_path / "stream"), tmp_path)
    decoder = submit_folder(settings, SAMPLES / "decoder", tmp_path)
    assert stream.status.value == decoder.status.value == "accepted"
    with transaction(settings) as session:
        assert session.get(Submission, stream.id).pack_images >= 40  # all four batches share a run
    assert not run(settings).platform_errors
    first, first_matrix = adversarial_outputs(settings), _matrix(settings, dataset)
    with transaction(settings) as session:
        planning.forget(session, None)
    assert not run(settings).platform_errors
    assert adversarial_outputs(settings) == first and _matrix(settings, dataset).equals(first_matrix)
    assert first_matrix.to_numpy().sum() > 0


def _matrix(settings, dataset):
    with transaction(settings) as session:
        return Standings.compute(session, dataset).matrix("error")
