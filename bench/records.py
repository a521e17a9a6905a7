"""``python -m bench.records``: microseconds to encode and decode object records.

Every GET and HEAD decodes its object's record, every PUT encodes one (and
decodes the one it replaces), and a listing decodes one per key through
:func:`lightningstor.core.records.listing_entry`.  This times the three for
a 4 KiB inline object (its data inside the record) and for a chunked one, in
this process (``timeit``, best of 5 runs of 2,000 calls each, so other load
on the box inflates the figures less than a mean would).
"""

from __future__ import annotations

import argparse
import os
import sys
import timeit
from collections.abc import Callable

from lightningstor.core import records
from lightningstor.core.types import ChunkRef, ObjectRecord


def _record(inline: bool) -> ObjectRecord:
    common = dict(key="photos/2026/11/26/img-000123.jpg", size=4096, etag="0123456789abcdef0123456789abcdef",
                  created_at=1764158000.123, content_type="image/jpeg", owner="admin", sequence=123)
    if inline:
        return ObjectRecord(inline=os.urandom(4096), **common)  # type: ignore[arg-type]
    chunks = [ChunkRef(os.urandom(16).hex(), i << 23, 1 << 23, 12345) for i in range(4)]
    return ObjectRecord(chunks=chunks, **common)  # type: ignore[arg-type]


def _best_us(call: Callable[[], object], number: int = 2000) -> float:
    return min(timeit.repeat(call, number=number, repeat=5)) / number * 1e6


def main() -> int:
    argparse.ArgumentParser(prog="python -m bench.records", description=__doc__.splitlines()[0]).parse_args()
    print("| record | bytes | encode us | decode us | listing entry us |")
    print("| --- | --- | --- | --- | --- |")
    for name, inline in (("4 KiB inline", True), ("4 chunks", False)):
        print(_row(name, _record(inline)))
    return 0


def _row(name: str, record: ObjectRecord) -> str:
    value = records.encode_object(record)
    encode = _best_us(lambda: records.encode_object(record))
    decode = _best_us(lambda: records.decode_object(value))
    entry = _best_us(lambda: records.listing_entry(record.key, value))
    return f"| {name} | {len(value):,} | {encode:.1f} | {decode:.1f} | {entry:.1f} |"


if __name__ == "__main__":
    sys.exit(main())
