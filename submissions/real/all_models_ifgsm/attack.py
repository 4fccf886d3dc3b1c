"""Momentum iterative FGSM on the ensemble of every defended model, Lite0, Lite1 and Lite2:
the source document's strongest attacker (its `**`) held the models of the defending ensemble,
so its Table 3 is a white-box attack on the unfiltered models that does not know the filter."""

import sys

import arena_zoo as zoo

if __name__ == "__main__":
    # three models' activations: 2 images at a time stay under the sandbox's 2 GB
    zoo.attack(["lite0", "lite1", "lite2"], *sys.argv[1:4], steps=10, chunk=2)
