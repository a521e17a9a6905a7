"""Which storage nodes hold a chunk (SPEC §5.2 placement strategies).

``consistent_hash`` is rendezvous (highest-random-weight) hashing: every node
gets a score ``hash(node, chunk_id)`` and the chunk lives on the N best.
Adding a node changes a chunk's placement only where the new node scores in
the top N, and then it displaces exactly one replica, so 1/(nodes+1) of the
replica placements move, the minimum; removing one moves only its replicas.
It needs no ring state and no virtual nodes.

``zone_aware`` walks the same ranking but takes at most one node per zone
until every zone is used, so replicas survive the loss of a zone (rack,
room, site); with fewer zones than replicas the rest fill in by rank.

``random`` picks N nodes at random for each write.  Reads cannot compute
where a chunk went, so readers (and repair) fall back to the rendezvous
ranking of all nodes, asking until one has it: fine for small clusters.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass

STRATEGIES = ("random", "consistent_hash", "zone_aware")


@dataclass(frozen=True)
class NodeAddress:
    """One storage node as configured: ``address`` is ``host:port``."""

    url: str
    address: str
    zone: str
    secure: bool = False


def _score(node: NodeAddress, chunk_id: str) -> int:
    digest = hashlib.blake2b(f"{node.url}\0{chunk_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def ranking(chunk_id: str, nodes: Sequence[NodeAddress]) -> list[NodeAddress]:
    """All ``nodes``, best first for ``chunk_id`` (deterministic on every server)."""
    return sorted(nodes, key=lambda node: _score(node, chunk_id), reverse=True)


def place(
    chunk_id: str,
    nodes: Sequence[NodeAddress],
    replicas: int,
    strategy: str,
    rng: random.Random | None = None,
) -> list[NodeAddress]:
    """The ``replicas`` nodes (distinct) that should hold ``chunk_id``."""
    count = min(replicas, len(nodes))
    if strategy == "random":
        return (rng or random.Random()).sample(list(nodes), count)
    ranked = ranking(chunk_id, nodes)
    if strategy == "consistent_hash":
        return ranked[:count]
    if strategy != "zone_aware":
        raise ValueError(f"unknown placement strategy {strategy!r}")
    chosen: list[NodeAddress] = []
    zones: set[str] = set()
    for node in ranked:
        if node.zone not in zones:
            chosen.append(node)
            zones.add(node.zone)
            if len(chosen) == count:
                return chosen
    for node in ranked:
        if node not in chosen:
            chosen.append(node)
            if len(chosen) == count:
                break
    return chosen


def read_order(chunk_id: str, nodes: Sequence[NodeAddress], replicas: int, strategy: str) -> list[NodeAddress]:
    """Nodes to ask for ``chunk_id``: its placement first, then every other
    node (a chunk written before nodes were added, or placed at random, may
    sit elsewhere until repair moves it)."""
    first = [] if strategy == "random" else place(chunk_id, nodes, replicas, strategy)
    return first + [node for node in ranking(chunk_id, nodes) if node not in first]


def majority(replicas: int) -> int:
    """The default write quorum: more than half of the replicas."""
    return replicas // 2 + 1
