"""Long lists of ids in statements: ``IN (...)`` a bounded number at a time.

Every id of an ``IN`` list is a bound parameter, and drivers cap a statement's parameters
(PostgreSQL's protocol at 65,535; SQLite at 32,766 or 250,000 by build), so a list as long as
a line's pool is read in chunks.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

#: The most ids one ``IN`` list binds.
IN_CHUNK = 10_000


def in_chunks(ids: Sequence[int], size: int | None = None) -> Iterator[Sequence[int]]:
    """``ids`` in consecutive slices of at most ``size`` (default :data:`IN_CHUNK`), in order;
    nothing for an empty sequence."""
    step = size or IN_CHUNK
    for start in range(0, len(ids), step):
        yield ids[start : start + step]
