"""The box's physical limits, measured in the same run as the servers."""

from __future__ import annotations

import hashlib
import os
import socket
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


def measure(directory: str, quick: bool) -> dict[str, float]:
    """All limits, MB/s."""
    return {
        "md5": hash_rate("md5"),
        "sha256": hash_rate("sha256"),
        "loopback": loopback_rate(256 * MiB if quick else 1024 * MiB),
        "disk_fsync": disk_fsync_rate(directory, 64 * MiB if quick else 256 * MiB),
    }
