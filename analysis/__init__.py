"""remask.analysis: measurements of parallel-decoding failure modes (see issue 5)."""

__all__: list[str] = []
