"""The perturbations attacks actually made, per epsilon: computed by hand from L-infinity and
L2 set on each stored adversarial image, including images stored before L2 was recorded
(NULL: unknown), through the query, the attack's page, its API detail and the export."""

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from arena.db import transaction
from arena.models import AdversarialImage, AttackJob, Image, SubmissionKind
from arena.results.export import export
from arena.results.perturbations import perturbations
from arena.web.app import create_app
from conftest import make_settings
from factories import attacked, synth_dataset

EPSILONS = [4, 16]
#: (L-infinity, L2, missing) of images 0..2 at each epsilon; at eps 16, image 2 predates L2.
STORED = {4: [(4, 500.0, False), (2, 300.0, False), (0, 0.0, True)],
          16: [(16, 2000.0, False), (12, 1000.0, False), (16, None, False)]}


@pytest.fixture
def arena(tmp_path):
    settings = make_settings(tmp_path / "arena", epsilons=EPSILONS)
    dataset = synth_dataset(settings, 3, batch_size=3)
    with transaction(settings) as session:
        ids = attacked(session, dataset, EPSILONS, [("A", SubmissionKind.ATTACK), ("D", SubmissionKind.DEFENSE)])
        order = {image.id: i for i, image in enumerate(session.scalars(select(Image).order_by(Image.id)))}
        for adversarial, eps in session.execute(select(AdversarialImage, AttackJob.epsilon)
                                                .join(AttackJob, AdversarialImage.attack_job_id == AttackJob.id)):
            adversarial.linf, adversarial.l2, adversarial.missing = STORED[eps][order[adversarial.image_id]]
    return settings, dataset, ids


def test_mean_and_largest_distance_per_epsilon(arena):
    settings, dataset, ids = arena
    with transaction(settings) as session:
        frame = perturbations(session, dataset, [ids["A"]]).set_index("epsilon")
    assert frame.loc[4, ["images", "missing", "linf_max", "l2_known"]].tolist() == [3, 1, 4, 3]
    assert frame.loc[4, "linf_mean"] == 2.0 and frame.loc[4, "l2_mean"] == pytest.approx(800 / 3)
    assert frame.loc[4, "l2_max"] == 500.0
    # eps 16: L2 over the two images that have it
    assert frame.loc[16, ["linf_max", "l2_known", "l2_max"]].tolist() == [16, 2, 2000.0]
    assert frame.loc[16, "linf_mean"] == pytest.approx(44 / 3) and frame.loc[16, "l2_mean"] == 1500.0


def test_unknown_l2_is_shown_as_unknown(arena):
    settings, dataset, ids = arena
    with transaction(settings) as session:
        for adversarial in session.scalars(select(AdversarialImage)):
            adversarial.l2 = None  # every image stored before migration 0011
    client = TestClient(create_app(settings))
    detail = client.get(f"/api/submissions/{ids['A']}").json()
    assert [(p["epsilon"], p["l2_known"], p["l2_mean"], p["l2_max"]) for p in detail["perturbations"]] == [
        (4, 0, None, None), (16, 0, None, None)]
    assert detail["perturbations"][1]["linf_max"] == 16
    page = client.get(f"/submissions/{ids['A']}").text
    assert 'id="perturbations"' in page and page.count(">unknown</td>") == 4
    assert client.get(f"/api/submissions/{ids['D']}").json()["perturbations"] == []  # a defense has none


def test_the_page_and_the_export_show_the_same_figures(arena, tmp_path):
    settings, dataset, ids = arena
    client = TestClient(create_app(settings))
    page = client.get(f"/submissions/{ids['A']}").text
    assert "<td>266.7 <small>" not in page and "<td>266.7</td><td>500.0</td>" in page  # all three known at eps 4
    assert "<td>1500.0 <small>over 2</small></td><td>2000.0</td>" in page
    with transaction(settings) as session:
        export(session, dataset, tmp_path / "out")
    written = pd.read_csv(tmp_path / "out" / "perturbations.csv")
    assert written["attack"].tolist() == ["A", "A"] and written["l2_known"].tolist() == [3, 2]
    assert written["l2_mean"].round(1).tolist() == [266.7, 1500.0] and written["linf_max"].tolist() == [4, 16]
