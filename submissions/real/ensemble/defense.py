"""The ensemble of EfficientNet-Lite0, Lite1 and Lite2 (mean probabilities), unfiltered."""

import sys

import arena_zoo as zoo

if __name__ == "__main__":
    zoo.defend(["lite0", "lite1", "lite2"], False, *sys.argv[1:3])
