"""What clients hear for failures below the core (errors.below_core): a
chunk that is gone and a chunk whose bytes are wrong are both data loss (500,
logged), but the message says which, so an operator reading a client's
report knows whether to look for a deleted file or for bitrot."""

from __future__ import annotations

from lightningstor.errors import ChunkCorrupted, ChunkNotFound, InternalError, below_core


def test_a_missing_chunk_is_not_reported_as_corrupt() -> None:
    missing = below_core(ChunkNotFound("chunk 1f"))
    corrupt = below_core(ChunkCorrupted("chunk 1f"))
    assert isinstance(missing, InternalError) and isinstance(corrupt, InternalError)
    assert "missing" in missing.message and "integrity" not in missing.message
    assert "integrity" in corrupt.message
