"""EfficientNet-Lite0 as it is: the model every white-box sample attack targets."""

import sys

import arena_zoo as zoo

if __name__ == "__main__":
    zoo.defend(["lite0"], False, *sys.argv[1:3])
