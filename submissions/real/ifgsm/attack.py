"""Iterative FGSM, white-box on EfficientNet-Lite0: four steps of 1.25 eps / 4, each
projected back into the eps ball, away from Lite0's own prediction."""

import sys

import torch

import arena_zoo as zoo


def main(input_dir: str, output_dir: str, eps: str) -> None:
    model = zoo.load("lite0")
    names, images = zoo.read_images(input_dir)
    out = torch.empty_like(images)
    forward = lambda x: zoo.logits(model, x)  # noqa: E731
    for part in zoo.in_chunks(images):
        with torch.no_grad():
            guess = forward(images[part]).argmax(1)
        out[part] = zoo.iterative_attack(forward, images[part], guess, int(eps) / 255, steps=4)
    zoo.write_images(output_dir, names, out)


if __name__ == "__main__":
    main(*sys.argv[1:4])
