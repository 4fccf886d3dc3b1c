"""Targeted iterative FGSM on EfficientNet-Lite0: four steps down the loss of the class
in target_class.csv, projected into the eps ball."""

import sys

import torch

import arena_zoo as zoo


def main(input_dir: str, output_dir: str, eps: str) -> None:
    model = zoo.load("lite0")
    names, images = zoo.read_images(input_dir)
    targets = zoo.read_targets(input_dir)
    wanted = torch.tensor([targets[n] for n in names], device=images.device)
    out = torch.empty_like(images)
    forward = lambda x: zoo.logits(model, x)  # noqa: E731
    for part in zoo.in_chunks(images):
        out[part] = zoo.iterative_attack(forward, images[part], wanted[part], int(eps) / 255, steps=4, targeted=True)
    zoo.write_images(output_dir, names, out)


if __name__ == "__main__":
    main(*sys.argv[1:4])
