"""Pictures of results: the error-matrix heatmap and misclassification-vs-epsilon curves.

matplotlib with the Agg backend (no display needed); every function writes one PNG.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def heatmap(matrix: pd.DataFrame, path: Path, title: str, percent: bool = True) -> Path:
    """Attacks down, defenses across, each cell annotated with its value."""
    height = 2.4 + 0.45 * len(matrix.index)
    width = 2.5 + 1.1 * len(matrix.columns)
    figure, axes = plt.subplots(figsize=(width, height))
    image = axes.imshow(matrix.to_numpy(dtype=float), cmap="Reds", vmin=0, vmax=100 if percent else None, aspect="auto")
    axes.set_xticks(range(len(matrix.columns)), matrix.columns, rotation=35, ha="right")
    axes.set_yticks(range(len(matrix.index)), matrix.index)
    for row, attack in enumerate(matrix.index):
        for column, defense in enumerate(matrix.columns):
            value = matrix.loc[attack, defense]
            text = f"{value:.0f}%" if percent else f"{value:g}"
            axes.text(column, row, text, ha="center", va="center", fontsize=8,
                      color="white" if percent and value > 60 else "black")
    axes.set_xlabel(matrix.columns.name or "defense")
    axes.set_ylabel(matrix.index.name or "attack")
    axes.set_title(title)
    figure.colorbar(image, ax=axes, label="misclassified (%)" if percent else None)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def epsilon_curves(curves: dict[str, pd.Series], path: Path, title: str, styles: dict[str, str] | None = None,
                   bands: dict[str, pd.DataFrame] | None = None) -> Path:
    """One line per entry: misclassification (%) against epsilon, each in its band (its 95%
    interval: ``low`` and ``high`` by epsilon) where ``bands`` has one."""
    figure, axes = plt.subplots(figsize=(7, 4.2))
    for label, series in curves.items():
        (line,) = axes.plot(series.index, series.to_numpy(), (styles or {}).get(label, "-o"), label=label)
        band = (bands or {}).get(label)
        if band is not None:
            axes.fill_between(band.index, band["low"], band["high"], color=line.get_color(), alpha=0.15, linewidth=0)
    axes.set_xscale("log", base=2)
    epsilons = sorted({e for s in curves.values() for e in s.index})
    axes.set_xticks(epsilons, [str(e) for e in epsilons])
    axes.set_xlabel("epsilon (L-infinity, of 255)")
    axes.set_ylabel("misclassified (%)")
    axes.set_ylim(0, 100)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    axes.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
