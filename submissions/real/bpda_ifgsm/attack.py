"""An adaptive attack on the median-filtered defenses: momentum iterative FGSM on Lite0, Lite1
and Lite2 behind a 3 x 3 median filter, the filter in the forward pass and the identity in the
backward pass (BPDA's straight-through gradient). Ten steps, as all_models_ifgsm, which is the
same attack without the filter."""

import sys

import arena_zoo as zoo

if __name__ == "__main__":
    zoo.attack(["lite0", "lite1", "lite2"], *sys.argv[1:4], steps=10, chunk=2, through_median=True)
