"""Text formatting shared by the reporting tables and the benchmark (below both in the import graph)."""

from __future__ import annotations

from collections.abc import Sequence


def markdown_grid(rows: Sequence[Sequence], columns: Sequence[str]) -> str:
    """A Markdown table through pandas (`DataFrame.to_markdown`): what every text table here is printed with."""
    import pandas as pd

    return pd.DataFrame(list(rows), columns=list(columns)).to_markdown(index=False, disable_numparse=True)
