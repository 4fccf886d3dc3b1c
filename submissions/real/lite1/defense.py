"""EfficientNet-Lite1 as it is: seen by the ensemble attack only."""

import sys

import arena_zoo as zoo

if __name__ == "__main__":
    zoo.defend(["lite1"], False, *sys.argv[1:3])
