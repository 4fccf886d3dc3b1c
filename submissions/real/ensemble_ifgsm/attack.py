"""Momentum iterative FGSM on the ensemble of EfficientNet-Lite0 and Lite1 (mean
probabilities), ten steps from a random start: perturbations that fool several models at once
transfer better to models never seen, which is what the 2017 winners did. Lite2 is held out,
as the source document held Inception-v4 out: the transfer attacker."""

import sys

import arena_zoo as zoo

if __name__ == "__main__":
    # two models' activations: 4 images at a time stay under the sandbox's 2 GB
    zoo.attack(["lite0", "lite1"], *sys.argv[1:4], steps=10, chunk=4)
