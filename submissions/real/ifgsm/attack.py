"""Iterative FGSM, white-box on EfficientNet-Lite0: four steps of 1.25 eps / 4, each
projected back into the eps ball, away from Lite0's own prediction."""

import sys

import arena_zoo as zoo

if __name__ == "__main__":
    zoo.attack(["lite0"], *sys.argv[1:4], steps=4)
