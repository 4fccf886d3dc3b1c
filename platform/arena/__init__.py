"""Arena: attack-defense tournaments for adversarial machine learning."""

from pathlib import Path

#: The repository root: migrations, sample submissions and base-image recipes live there.
REPO_ROOT = Path(__file__).resolve().parents[2]
