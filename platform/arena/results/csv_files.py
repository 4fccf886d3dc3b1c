"""Every CSV Arena writes (exports, bundles, the API's files, `arena leaderboard --format
csv`) is written here, so that none can carry a formula into a spreadsheet.

Team and submission names are chosen by the teams, and the exports are public: a name such
as ``=HYPERLINK(...)`` would be a live formula cell when an organizer or a visitor opens the
file in a spreadsheet. Text that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
return is written with a leading ``'`` (OWASP's advice for CSV injection), in cells, the
header and the index alike; numbers are written as they are.
"""

from pathlib import Path
from typing import IO

import pandas as pd

#: What a spreadsheet reads as the start of a formula.
FORMULA_LEADS = ("=", "+", "-", "@", "\t", "\r")


def neutralised(value: object) -> object:
    """``value``, with a ``'`` before text a spreadsheet would run as a formula."""
    return f"'{value}" if isinstance(value, str) and value.startswith(FORMULA_LEADS) else value


def safe(frame: pd.DataFrame, index: bool = False) -> pd.DataFrame:
    """``frame`` with every text cell, column name and (when written) index label neutralised."""
    shown = frame.copy()
    shown.columns = [neutralised(column) for column in shown.columns]
    if index:
        shown.index = pd.Index([neutralised(label) for label in shown.index], name=neutralised(shown.index.name))
    for column in shown.columns:
        if not pd.api.types.is_numeric_dtype(shown[column]):
            shown[column] = shown[column].map(neutralised)
    return shown


def write(frame: pd.DataFrame, target: Path | IO[str] | None = None, index: bool = False) -> str | None:
    """``frame`` as CSV into ``target`` (a path or an open text file), or returned as text."""
    return safe(frame, index).to_csv(target, index=index)
