"""The box's physical limits, measured in the same run as the servers."""

from __future__ import annotations

import hashlib
import os
import socket
import sqlite3
import statistics
import threading
import time

MiB = 1 << 20


def hash_rate(name: str, seconds: float = 0.5) -> float:
    """MB/s of one core hashing 1 MiB buffers with ``hashlib.new(name)``."""
    buf = os.urandom(MiB)
    h = hashlib.new(name)
    n = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        h.update(buf)
        n += 1
    return n * MiB / 1e6 / (time.perf_counter() - start)


def loopback_rate(total: int = 512 * MiB) -> float:
    """MB/s through one loopback TCP connection (sender and receiver threads)."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    got = [0]

    def receive() -> None:
        conn, _ = listener.accept()
        buf = bytearray(MiB)
        with conn:
            while n := conn.recv_into(buf):
                got[0] += n

    thread = threading.Thread(target=receive)
    thread.start()
    data = os.urandom(MiB)
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as s:
        for _ in range(total // MiB):
            s.sendall(data)
    thread.join()
    listener.close()
    return got[0] / 1e6 / (time.perf_counter() - start)


def disk_fsync_rate(directory: str, total: int = 128 * MiB, piece: int = 8 * MiB) -> float:
    """MB/s writing ``total`` bytes in ``piece`` writes, fsync after each (as
    the local backend does per chunk)."""
    path = os.path.join(directory, "bench-disk.tmp")
    data = os.urandom(piece)
    start = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for _ in range(total // piece):
            os.write(fd, data)
            os.fsync(fd)
    finally:
        os.close(fd)
    elapsed = time.perf_counter() - start
    os.unlink(path)
    return total / 1e6 / elapsed


def durable_commit_ms(directory: str, count: int = 300) -> float:
    """Median ms of one durable SQLite commit of a 4 KiB row (WAL,
    ``synchronous = FULL``: what the metadata store does for each PUT batch).

    A durable PUT at concurrency 1 waits for at least one such commit, so
    ``1000 / this`` bounds its rate whatever the server does; a server that
    keeps objects in memory (moto) pays nothing like it.
    """
    path = os.path.join(directory, "bench-commit.db")
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("CREATE TABLE kv (key BLOB PRIMARY KEY, value BLOB NOT NULL)")
        row = os.urandom(4096)
        times = []
        for i in range(count):
            start = time.perf_counter()
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO kv VALUES (?, ?)", (b"k%d" % i, row))
            conn.execute("COMMIT")
            times.append(time.perf_counter() - start)
    finally:
        conn.close()
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.unlink(path + suffix)
    return statistics.median(times) * 1e3


UNITS = {"durable_commit": "ms"}
"""Limits not in MB/s."""


def measure(directory: str, quick: bool) -> dict[str, float]:
    """All limits: MB/s, or the unit in :data:`UNITS`."""
    return {
        "md5": hash_rate("md5"),
        "sha256": hash_rate("sha256"),
        "loopback": loopback_rate(256 * MiB if quick else 1024 * MiB),
        "disk_fsync": disk_fsync_rate(directory, 64 * MiB if quick else 256 * MiB),
        "durable_commit": durable_commit_ms(directory, 100 if quick else 300),
    }
