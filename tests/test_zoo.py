"""arena_zoo, the library the real-model samples share (it lives in the torch base image's
recipe folder): the median filter, the attacks' eps bound and step schedule, BPDA's
straight-through gradient and EOT's averaging, on tiny models whose gradients are known.
Skipped where torch is not installed (``make setup`` installs it into the venv). The tests
that move images run on every device torch sees: on a GPU machine the CUDA path too."""

import sys

import numpy as np
import pytest

from arena import REPO_ROOT

torch = pytest.importorskip("torch")
sys.path.insert(0, str(REPO_ROOT / "submissions" / "base-images" / "torch"))
import arena_zoo as zoo  # noqa: E402

CLASSES = 4
DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


def linear_model(seed: int = 0):
    """Logits linear in the image's per-channel means: its gradient is the same at every pixel."""
    weights = torch.randn(3, CLASSES, generator=torch.Generator().manual_seed(seed))
    return lambda images: images.mean(dim=(2, 3)) @ weights


def pixel_model(seed: int = 0, device: str = "cpu"):
    """Logits linear in every pixel: a gradient that differs from pixel to pixel."""
    weights = torch.randn(CLASSES, 3, 8, 8, generator=torch.Generator().manual_seed(seed)).to(device)
    return lambda images: torch.einsum("nchw,kchw->nk", images, weights)


def images(count: int = 3, size: int = 8, device: str = "cpu") -> torch.Tensor:
    return torch.rand(count, 3, size, size, generator=torch.Generator().manual_seed(1)).to(device)


@pytest.mark.parametrize("device", DEVICES)
def test_the_median_filter_is_numpys_median_of_each_3x3_window_with_edges_replicated(device):
    pictures = torch.randint(0, 5, (2, 3, 11, 13), generator=torch.Generator().manual_seed(2)).float()
    padded = np.pad(pictures.numpy(), ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(2, 3))
    expected = np.median(windows.reshape(*windows.shape[:4], 9), axis=-1)
    assert np.array_equal(zoo.median3x3(pictures.to(device)).cpu().numpy(), expected)


def test_salt_noise_is_removed_and_a_flat_image_is_left_alone():
    flat = torch.full((1, 3, 9, 9), 0.5)
    salted = flat.clone()
    salted[0, :, 4, 4] = 1.0
    assert torch.equal(zoo.median3x3(salted), flat)
    assert torch.equal(zoo.median3x3(flat), flat)


def test_the_step_schedule():
    assert zoo.step_size(8.0, 1, random_start=True) == 8.0  # FGSM: the whole eps at once
    assert zoo.step_size(8.0, 10, random_start=True) == pytest.approx(2.0)  # 2.5 eps / steps
    assert zoo.step_size(8.0, 10, random_start=False) == pytest.approx(1.0)  # 1.25 eps / steps


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("steps", [1, 10])
@pytest.mark.parametrize("eps", [2 / 255, 16 / 255])
def test_every_output_stays_in_the_eps_ball_and_in_range(steps, eps, device):
    clean = images(device=device)
    clean[0] = 0.0  # a black image: the ball's lower half is outside [0, 1]
    labels = torch.tensor([0, 1, 2], device=device)
    adversarial = zoo.iterative_attack(pixel_model(device=device), clean, labels, eps, steps, samples=2,
                                       transform=zoo.shifted)
    assert adversarial.device == clean.device
    assert (adversarial - clean).abs().max() <= eps + 1e-6
    assert adversarial.min() >= 0 and adversarial.max() <= 1


def test_the_attack_raises_the_loss_and_the_targeted_one_lowers_it():
    model, clean, labels = pixel_model(), images(), torch.tensor([0, 1, 2])
    loss = lambda x, y: torch.nn.functional.cross_entropy(model(x), y).item()  # noqa: E731
    assert loss(zoo.iterative_attack(model, clean, labels, 8 / 255, 10), labels) > loss(clean, labels)
    targets = torch.tensor([3, 3, 3])
    assert loss(zoo.iterative_attack(model, clean, targets, 8 / 255, 10, targeted=True), targets) < loss(clean, targets)


def test_fgsm_moves_every_pixel_by_eps_along_the_gradient_sign():
    model, clean, labels = pixel_model(), torch.full((2, 3, 8, 8), 0.5), torch.tensor([0, 1])
    adversarial = zoo.iterative_attack(model, clean, labels, 4 / 255, 1)
    expected = clean + 4 / 255 * zoo.gradient(model, clean, labels).sign()
    assert torch.allclose(adversarial, expected)


@pytest.mark.parametrize("device", DEVICES)
def test_the_random_start_is_seeded(device):
    """A model that ignores its input has a zero gradient: the output is the random start itself."""
    model = lambda x: (x * 0).sum(dim=(1, 2, 3))[:, None].expand(-1, CLASSES)  # noqa: E731
    clean, labels = images(device=device), torch.tensor([0, 1, 2], device=device)
    first = zoo.iterative_attack(model, clean, labels, 8 / 255, 3, seed=5)
    assert torch.equal(first, zoo.iterative_attack(model, clean, labels, 8 / 255, 3, seed=5))
    assert not torch.equal(first, zoo.iterative_attack(model, clean, labels, 8 / 255, 3, seed=6))


@pytest.mark.parametrize("device", DEVICES)
def test_bpda_sees_the_filter_forward_and_the_identity_backward(device):
    clean = images(device=device).requires_grad_(True)
    through = zoo.straight_through(zoo.median3x3)(clean)
    assert torch.equal(through, zoo.median3x3(clean.detach()))
    weights = torch.randn_like(clean)
    (grad,) = torch.autograd.grad((through * weights).sum(), clean)
    assert torch.equal(grad, weights)  # the median's own gradient would be zero on most pixels


def test_bpda_gives_a_gradient_where_the_filter_gives_almost_none():
    """A filter that rounds to 1/8 levels has a zero gradient everywhere: attacking through it
    plainly cannot move, through BPDA it can."""
    quantize = lambda x: torch.round(x * 8) / 8  # noqa: E731
    model, clean, labels = pixel_model(), images(), torch.tensor([0, 1, 2])
    plain = zoo.gradient(lambda x: model(quantize(x)), clean, labels)
    adaptive = zoo.gradient(lambda x: model(zoo.straight_through(quantize)(x)), clean, labels)
    assert plain.abs().max() == 0
    assert adaptive.abs().min() > 0


def test_eot_averages_the_gradient_over_its_transformations():
    model, clean, labels = linear_model(), images(), torch.tensor([0, 1, 2])
    plain = zoo.gradient(model, clean, labels)
    # a model of channel means does not see a shift: the mean over shifts is its gradient
    shifted = zoo.gradient(model, clean, labels, zoo.shifted, samples=4, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(shifted, plain, atol=1e-6)
    # a model of every pixel sees it: the mean is over the shifted gradients, not one of them
    model = pixel_model()
    rolls = [lambda x, _g, s=s: torch.roll(x, shifts=s, dims=(2, 3)) for s in [(0, 0), (1, 0)]]
    cycle = iter(rolls * 2)
    averaged = zoo.gradient(model, clean, labels, lambda x, g: next(cycle)(x, g), samples=2)
    expected = (zoo.gradient(model, clean, labels, rolls[0]) + zoo.gradient(model, clean, labels, rolls[1])) / 2
    assert torch.allclose(averaged, expected, atol=1e-6)
