"""EfficientNet-Lite2 as it is: held out from every sample attack (transfer only)."""

import sys

import arena_zoo as zoo

if __name__ == "__main__":
    zoo.defend(["lite2"], False, *sys.argv[1:3])
