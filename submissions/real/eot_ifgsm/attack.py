"""bpda_ifgsm with expectation over transformation (EOT): each step's gradient is the mean over
two random one-pixel shifts of the image, so the perturbation survives wherever the filter's
3 x 3 windows fall. Five steps of two gradients each: the same gradient budget as bpda_ifgsm."""

import sys

import arena_zoo as zoo

if __name__ == "__main__":
    zoo.attack(["lite0", "lite1", "lite2"], *sys.argv[1:4], steps=5, chunk=2, through_median=True, samples=2)
