"""Targeted momentum iterative FGSM on EfficientNet-Lite0: ten steps down the loss of the
class in target_class.csv, from a random start, projected into the eps ball."""

import sys

import arena_zoo as zoo

if __name__ == "__main__":
    zoo.attack(["lite0"], *sys.argv[1:4], steps=10, targeted=True)
