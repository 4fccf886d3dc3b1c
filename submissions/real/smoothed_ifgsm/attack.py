"""Iterative FGSM on EfficientNet-Lite0 with a low-pass filtered gradient: the
perturbation is made of smooth blobs rather than pixel noise, the kind the median-filter
study found beats spatial smoothing (a 3 x 3 median leaves smooth patterns intact)."""

import sys

import torch
import torch.nn.functional as F

import arena_zoo as zoo


def blur(gradient: torch.Tensor, size: int = 9) -> torch.Tensor:
    kernel = torch.ones(3, 1, size, size, device=gradient.device) / size**2
    return F.conv2d(F.pad(gradient, [size // 2] * 4, mode="replicate"), kernel, groups=3)


def main(input_dir: str, output_dir: str, eps: str) -> None:
    model = zoo.load("lite0")
    names, images = zoo.read_images(input_dir)
    out = torch.empty_like(images)
    forward = lambda x: zoo.logits(model, x)  # noqa: E731
    for part in zoo.in_chunks(images):
        with torch.no_grad():
            guess = forward(images[part]).argmax(1)
        out[part] = zoo.iterative_attack(forward, images[part], guess, int(eps) / 255, steps=4, smooth=blur)
    zoo.write_images(output_dir, names, out)


if __name__ == "__main__":
    main(*sys.argv[1:4])
