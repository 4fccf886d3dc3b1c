"""A 3 x 3 median filter in front of EfficientNet-Lite2, as in the 2017 median-filter study."""

import sys

import arena_zoo as zoo

if __name__ == "__main__":
    zoo.defend(["lite2"], True, *sys.argv[1:3])
