"""FGSM, white-box on EfficientNet-Lite0: one step of eps along the sign of the gradient
of the loss of Lite0's own prediction (the true label is not given to attacks)."""

import sys

import arena_zoo as zoo

if __name__ == "__main__":
    zoo.attack(["lite0"], *sys.argv[1:4], steps=1)
