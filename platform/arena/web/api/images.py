"""/api/images, /api/adversarial: clean and adversarial images and their perturbations (organizers)."""

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from sqlalchemy.orm import Session

from arena.callers import Caller
from arena.data.images import ImageStore, amplified_perturbation, encode_png, image_store, read_png
from arena.data.objects import ObjectMissing
from arena.errors import NotFoundError
from arena.models import AdversarialImage, Image
from arena.web import queries
from arena.web.api.parameters import Id, SettingsDep
from arena.web.auth import organizer
from arena.web.deps import SessionDep
from arena.web.schemas import Drilldown

router = APIRouter(tags=["images"])


@router.get("/adversarial/{adversarial_id}", response_model=Drilldown,
            summary="One adversarial image and every defense's answer on it")
def get_adversarial(adversarial_id: Id, session: SessionDep, _: Caller = Depends(organizer)) -> dict:
    return queries.drilldown(session, adversarial_id)


PNG = {"response_class": Response, "responses": {200: {"content": {"image/png": {}}}}}


def _read(store: ImageStore, sha256: str) -> bytes:
    """The image's bytes; a file the store lacks is not found (a damaged object stays the
    platform's error)."""
    try:
        path = store.path(sha256)
    except ObjectMissing:
        path = None
    if path is None or not path.is_file():
        raise NotFoundError("the image file is not in the store (was the data directory moved?)")
    return path.read_bytes()


def _png(store: ImageStore, sha256: str) -> Response:
    return Response(_read(store, sha256), media_type="image/png")


@router.get("/images/{image_id}/image.png", summary="A clean dataset image (organizers)", **PNG)
def clean_png(image_id: Id, session: SessionDep, settings: SettingsDep, _: Caller = Depends(organizer)) -> Response:
    image = session.get(Image, image_id)
    if image is None:
        raise NotFoundError(f"no image with id {image_id}")
    return _png(image_store(settings), image.sha256)


def _adversarial(session: Session, adversarial_id: int) -> AdversarialImage:
    adversarial = session.get(AdversarialImage, adversarial_id)
    if adversarial is None:
        raise NotFoundError(f"no adversarial image with id {adversarial_id}")
    return adversarial


@router.get("/adversarial/{adversarial_id}/image.png", summary="An adversarial image (organizers)", **PNG)
def adversarial_png(adversarial_id: Id, session: SessionDep, settings: SettingsDep,
                    _: Caller = Depends(organizer)) -> Response:
    return _png(image_store(settings), _adversarial(session, adversarial_id).sha256)


@router.get("/adversarial/{adversarial_id}/perturbation.png",
            summary="The perturbation, amplified so that +-eps spans the grey scale (organizers)", **PNG)
def perturbation_png(adversarial_id: Id, session: SessionDep, settings: SettingsDep,
                     _: Caller = Depends(organizer)) -> Response:
    adversarial = _adversarial(session, adversarial_id)
    store = image_store(settings)
    adversarial_bytes, clean_bytes = (_read(store, sha256) for sha256 in (adversarial.sha256, adversarial.image.sha256))
    amplified = amplified_perturbation(read_png(clean_bytes), read_png(adversarial_bytes), adversarial.attack_job.epsilon)
    return Response(encode_png(amplified), media_type="image/png")
