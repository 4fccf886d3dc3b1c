"""A 3 x 3 median filter in front of EfficientNet-Lite0, as in the 2017 median-filter study."""

import sys

import torch

import arena_zoo as zoo

MODELS = ["lite0"]
MEDIAN = True


def main(input_dir: str, output_file: str) -> None:
    models = [zoo.load(name) for name in MODELS]
    names, images = zoo.read_images(input_dir)
    labels = []
    with torch.no_grad():
        for part in zoo.in_chunks(images):
            batch = zoo.median3x3(images[part]) if MEDIAN else images[part]
            labels.append(zoo.ensemble_logits(models, batch).argmax(1))
    zoo.write_labels(output_file, names, torch.cat(labels))


if __name__ == "__main__":
    main(*sys.argv[1:3])
