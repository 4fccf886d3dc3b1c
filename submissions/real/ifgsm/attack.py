"""Momentum iterative FGSM (MI-FGSM, the 2017 winners' attack), white-box on
EfficientNet-Lite0: ten steps from a random start in the eps ball, each projected back into it,
away from Lite0's own prediction."""

import sys

import arena_zoo as zoo

if __name__ == "__main__":
    zoo.attack(["lite0"], *sys.argv[1:4], steps=10)
