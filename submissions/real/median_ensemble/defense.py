"""A 3 x 3 median filter in front of the Lite0/1/2 ensemble: the study's best defense, in small."""

import sys

import arena_zoo as zoo

if __name__ == "__main__":
    zoo.defend(["lite0", "lite1", "lite2"], True, *sys.argv[1:3])
