"""The one text-table formatter: aligned columns, a rule under the header, an optional footer.

Used by the parameter table (zoo.reporting.summary), the weights' inspection and diff
(zoo.weights.inspection) and a sweep's summary (zoo.app.sweep).
"""

from __future__ import annotations

from collections.abc import Sequence


def table_line(cells: Sequence[str], widths: Sequence[int], left: int) -> str:
    """One row: the first `left` cells flush left, the others flush right, two spaces apart."""
    justified = [
        c.ljust(w) if i < left else c.rjust(w)
        for i, (c, w) in enumerate(zip(cells, widths, strict=True))
    ]
    return "  ".join(justified).rstrip()


def format_table(
    header: Sequence[str],
    rows: Sequence[Sequence[object]],
    left: int = 1,
    footer: Sequence[str] | None = None,
    rule: bool = True,
) -> str:
    """An aligned text table: the header, a rule (unless `rule` is False), the rows, and with
    `footer` another rule and the footer row (e.g. a total). The first `left` columns are flush
    left, the others flush right."""
    rows = [[str(c) for c in row] for row in rows]
    every = [list(header), *rows] + ([list(footer)] if footer else [])
    widths = [max(len(r[i]) for r in every) for i in range(len(header))]
    first = table_line(header, widths, left)
    line = "-" * len(first)
    lines = [first, *([line] if rule else []), *(table_line(r, widths, left) for r in rows)]
    if footer:
        lines += [line, table_line(footer, widths, left)]
    return "\n".join(lines)
