"""Iterative FGSM on the ensemble of EfficientNet-Lite0 and Lite1 (mean probabilities):
perturbations that fool several models at once transfer better to models never seen,
which is what the 2017 winners did. Lite2 is held out, as the study held one model out."""

import sys

import torch

import arena_zoo as zoo


def main(input_dir: str, output_dir: str, eps: str) -> None:
    models = [zoo.load("lite0"), zoo.load("lite1")]
    names, images = zoo.read_images(input_dir)
    out = torch.empty_like(images)
    forward = lambda x: zoo.ensemble_logits(models, x)  # noqa: E731
    for part in zoo.in_chunks(images, 4):  # two models' activations: 4 images stay under 2 GB
        with torch.no_grad():
            guess = forward(images[part]).argmax(1)
        out[part] = zoo.iterative_attack(forward, images[part], guess, int(eps) / 255, steps=3)
    zoo.write_images(output_dir, names, out)


if __name__ == "__main__":
    main(*sys.argv[1:4])
