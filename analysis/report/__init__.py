"""The einspace report: a self-contained HTML page, Markdown and CSV tables.

:func:`report` writes the five sections (the space, the taxonomy map, cost at a width,
search results, how it was made). One module per concept: :mod:`.document` (blocks and
their HTML/Markdown rendering), :mod:`.figures` (Agg figures), :mod:`.space`,
:mod:`.taxonomy`, :mod:`.cost`, :mod:`.results` and :mod:`.provenance` (the sections'
data and plots) and :mod:`.build` (assembly and the atomic write).

Importing this package imports neither matplotlib nor torch.
"""

from analysis.report.build import report

__all__ = ["report"]
