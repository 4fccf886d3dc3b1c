"""Drawing for the pages: heatmap colours and the epsilon-curve chart as inline SVG.

Drawn on the server, so the pages need no chart library and render the same in every
browser (and in the screenshots). The heatmap's cells are coloured by arena.js from the
same two things the scale above them is drawn with: the value's colour and the grey of
a cell without answers.
"""

from dataclasses import dataclass

#: Colour-blind-safe line colours (Okabe-Ito).
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]
HEAT = {"error": (213, 94, 0), "correct": (0, 158, 115), "hit": (204, 121, 167),
        "success": (213, 94, 0), "avc": (0, 114, 178)}  # the query track's: success as error
#: A cell with no answers yet.
EMPTY = "#eee"
#: The AVC view's lightest finite shade: the largest median shown; an infinite one is blank.
LIGHTEST_L2 = 0.2


def heat(value: str, count: int, answered: int) -> str:
    """A background: the rate as opacity over the value's colour; no answers, grey."""
    if not answered:
        return f"background:{EMPTY}"
    return f"background:rgba({heat_rgb(value)},{count / answered:.3f})"


def l2_shade(l2: float, scale: float) -> float:
    """The opacity of an AVC cell: 1 at distance 0 (the strongest attack), ``LIGHTEST_L2`` at
    ``scale`` (the largest finite median shown); arena.js's ``cellFigure`` shades the same."""
    return 1 - (1 - LIGHTEST_L2) * (l2 / scale if scale else 0)


def l2_heat(l2: float, scale: float) -> str:
    return f"background:rgba({heat_rgb('avc')},{l2_shade(l2, scale):.3f})"


def heat_rgb(value: str) -> str:
    """The value's colour as ``r,g,b``, for ``rgba()`` here and in arena.js."""
    return ",".join(map(str, HEAT[value]))


@dataclass(frozen=True)
class Line:
    name: str
    colour: str
    points: str
    dots: list[tuple[float, float, str]]
    band: str  # the 95% interval as a polygon: the upper bounds left to right, the lower ones back


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    left: int
    bottom: int
    x_ticks: list[tuple[float, int]]
    y_ticks: list[tuple[float, int]]
    lines: list[Line]


def epsilon_chart(curves: dict[str, dict[int, float]], bands: dict[str, dict[int, dict[str, float]]],
                  width: int = 640, height: int = 320) -> Chart:
    """Misclassified (%) against epsilon, one line per defense, in a band that is its 95%
    interval (``bands``: low and high by epsilon); epsilons evenly spaced, since they usually
    double (2, 4, 8, 16)."""
    left, right, top, bottom = 48, 16, 12, 36
    epsilons = sorted({eps for curve in curves.values() for eps in curve})
    step = (width - left - right) / max(1, len(epsilons) - 1)
    x = {eps: left + i * step for i, eps in enumerate(epsilons)}

    def y(rate: float) -> float:
        return top + (100 - rate) / 100 * (height - top - bottom)

    lines = []
    for i, (name, curve) in enumerate(curves.items()):
        band = bands[name]
        dots = [(round(x[e], 1), round(y(r), 1),
                 f"{name}: {r:.1f}% at eps={e} (95% interval {band[e]['low']:.1f}–{band[e]['high']:.1f}%)")
                for e, r in sorted(curve.items())]
        points = " ".join(f"{dx},{dy}" for dx, dy, _ in dots)
        edge = [(e, "high") for e in sorted(curve)] + [(e, "low") for e in sorted(curve, reverse=True)]
        outline = " ".join(f"{round(x[e], 1)},{round(y(band[e][side]), 1)}" for e, side in edge)
        lines.append(Line(name, PALETTE[i % len(PALETTE)], points, dots, outline))
    return Chart(width, height, left, height - bottom, [(round(x[e], 1), e) for e in epsilons],
                 [(round(y(r), 1), r) for r in range(0, 101, 20)], lines)
