"""``python -m bench.floor``: what a lean request path could cost per small GET.

Issue 8's small-object targets ask for about 40 % less CPU per GET than the
server spends (docs/performance.md, "Seventh round").  Trimming the current
path found no single lever above a few per cent, so the question for a
redesign is how low a GET can go with the parts that cannot be dropped.
This measures that floor: a Twisted protocol that does only what every
signed 4 KiB GET must do, with LightningStor's own components:

* parse the request line and headers from the socket's bytes (no
  twisted.web ``Request``);
* verify the presigned SigV4 signature (``lightningstor.auth``: the
  server's parser and verifier, the credential from a dict);
* read the object's record through the SQLite store's read pool
  (``lightningstor.metadata.sqlite``, one thread hop) and decode it
  (``lightningstor.core.records``);
* answer the head and the inline body with one write.

Left out, and why the figure is a floor and not a server: authorization,
bucket lookup (a cache hit in the server), conditional and range headers,
the access log, the audit record, metrics, limits and timeouts.  The
server's py-spy profile puts the finish hooks (logs, audit, metrics) at
about 9 % of its reactor time.

The driver starts the floor server in its own process, fires presigned GETs
at concurrency 16 with the suite's asyncio generator, and reports CPU per
request from ``/proc`` as ``bench.cpu_per_request`` does.

``--http-only`` measures the floor under that floor: a Twisted protocol that
splits the request line and headers and answers every request with the same
200 and 4 KiB body (no signature, no store).  Beside the trivial
``twisted.web`` server (``bench.cpu_per_request --trivial``) it tells what
twisted.web's HTTP machinery costs per request, the most an HTTP layer of
our own could save.

    .venv/bin/python -m bench.floor [--keys 1500] [--repeat 6] [--http-only]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import loadgen, phases, servers  # noqa: E402
from bench.servers import cpu_seconds  # noqa: E402

ACCESS_KEY = "LSFLOORACCESSKEY0001"
SECRET_KEY = "floor/secret/key/for/the/lean/path/only0"
BUCKET = "floor"
BODY = b"f" * 4096


def split_heads(buffer: bytes) -> tuple[list[bytes], bytes]:
    """The complete request heads at the start of ``buffer`` (no body: the
    floors serve GETs), and what is left after them."""
    heads = []
    while (end := buffer.find(b"\r\n\r\n")) >= 0:
        heads.append(buffer[:end])
        buffer = buffer[end + 4 :]
    return heads, buffer


def parse_head(head: bytes) -> tuple[bytes, bytes, dict[str, list[str]]]:
    """Method, target and headers (lower-case names) of one request head."""
    lines = head.split(b"\r\n")
    method, target, _version = lines[0].split(b" ", 2)
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers.setdefault(name.decode("latin-1").lower(), []).append(value.strip().decode("latin-1"))
    return method, target, headers


def serve_http_only() -> None:
    """The HTTP floor (runs in its own process): parse, answer, print PORT."""
    from twisted.internet import endpoints, protocol, reactor

    answer = b"HTTP/1.1 200 OK\r\nContent-Type: binary/octet-stream\r\nContent-Length: 4096\r\n\r\n" + BODY

    class HttpOnly(protocol.Protocol):
        def connectionMade(self) -> None:
            self.buffer = b""

        def dataReceived(self, data: bytes) -> None:
            heads, self.buffer = split_heads(self.buffer + data)
            for head in heads:
                parse_head(head)
                assert self.transport is not None
                self.transport.write(answer)

    factory = protocol.Factory.forProtocol(HttpOnly)
    d = endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
    d.addCallback(lambda port: print(f"PORT {port.getHost().port}", flush=True))
    reactor.run()  # type: ignore[attr-defined]


def serve(db_path: str, keys: int) -> None:
    """The floor server (runs in its own process): fill, listen, print PORT."""
    from twisted.internet import endpoints, protocol, reactor

    from lightningstor.auth.request import RequestView, parse_auth, verify
    from lightningstor.core.records import decode_object, encode_object
    from lightningstor.core.types import ObjectRecord
    from lightningstor.interfaces.metadata import Put
    from lightningstor.metadata.sqlite import SqliteMetadataStore
    from lightningstor.s3.addressing import parse_target
    from lightningstor.s3.dates import http_date

    store = SqliteMetadataStore(db_path, reactor, synchronous="NORMAL")
    secrets = {ACCESS_KEY: SECRET_KEY}

    class Floor(protocol.Protocol):
        def connectionMade(self) -> None:
            self.buffer = b""

        def dataReceived(self, data: bytes) -> None:
            heads, self.buffer = split_heads(self.buffer + data)
            for head in heads:
                self.request(head)

        def reply(self, data: bytes) -> None:
            assert self.transport is not None
            self.transport.write(data)

        def request(self, head: bytes) -> None:
            method, target, headers = parse_head(head)
            t = parse_target(target, headers.get("host", [""])[0], None)
            view = RequestView(method=method.decode(), raw_path=t.raw_path, raw_query=t.raw_query, headers=headers)
            try:
                parsed = parse_auth(view)
                verify(parsed, secrets[parsed.access_key], view, now=time.time(), region="us-east-1")
            except Exception:
                self.reply(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                return
            d = store.get(b"o/" + f"{t.bucket}/{t.key}".encode())
            d.addCallback(self.found)

        def found(self, kv: Any) -> None:
            if kv is None:
                self.reply(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                return
            record = decode_object(kv.value)
            body = record.inline or b""
            self.reply(
                b"HTTP/1.1 200 OK\r\nETag: " + record.quoted_etag.encode()
                + b"\r\nLast-Modified: " + http_date(record.created_at).encode()
                + b"\r\nContent-Type: " + record.content_type.encode()
                + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )

    def fill() -> Any:
        import hashlib

        puts = []
        for i in range(keys):
            record = ObjectRecord(
                key=f"p/{i}", size=len(BODY), etag=hashlib.md5(BODY).hexdigest(),
                created_at=int(time.time() * 1000), inline=BODY,
            )
            puts.append(Put(b"o/" + f"{BUCKET}/p/{i}".encode(), encode_object(record)))
        return store.txn([], puts)

    def listen(_: Any) -> Any:
        factory = protocol.Factory.forProtocol(Floor)
        return endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)

    def failed(failure: Any) -> None:
        print(failure.getTraceback(), file=sys.stderr, flush=True)
        reactor.stop()  # type: ignore[attr-defined]

    chain = fill()
    chain.addCallback(listen)
    chain.addCallback(lambda port: print(f"PORT {port.getHost().port}", flush=True))
    chain.addErrback(failed)
    reactor.run()  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=3, help="passes over the keys per run")
    parser.add_argument("--repeat", type=int, default=6)
    parser.add_argument("--http-only", action="store_true", help="the HTTP floor: parse and answer, nothing else")
    parser.add_argument("--serve", nargs=2, metavar=("DB", "KEYS"), help=argparse.SUPPRESS)
    parser.add_argument("--serve-http-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return 0
    if args.serve_http_only:
        serve_http_only()
        return 0
    scratch = tempfile.mkdtemp(prefix="floor-")
    command = [sys.executable, "-m", "bench.floor"]
    command += ["--serve-http-only"] if args.http_only else ["--serve", os.path.join(scratch, "floor.db"), str(args.keys)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=str(Path(__file__).resolve().parent.parent))
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline().split()[1])
        endpoint = f"http://127.0.0.1:{port}"
        client = servers.s3_client(endpoint, ACCESS_KEY, SECRET_KEY)
        urls = phases._presign_many(client, "GET", BUCKET, [f"p/{i}" for i in range(args.keys)])
        requests = [loadgen.build("GET", u) for u in urls] * args.rounds
        loadgen.run(endpoint, requests[:200], 16)  # warm up
        print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        per_request = []
        for _ in range(args.repeat):
            s0 = cpu_seconds(proc.pid)
            result = loadgen.run(endpoint, requests, 16)
            used = cpu_seconds(proc.pid) - s0
            assert result.errors == 0, f"{result.errors} errors"
            assert result.body_bytes == result.requests * len(BODY), "a response lacked its body"
            per_request.append(used / result.requests * 1e6)
            print(f"GET c=16: {result.requests / result.seconds:7.0f} req/s  server {per_request[-1]:5.0f} us/req")
        print(f"median server CPU per GET: {statistics.median(per_request):.0f} us "
              f"(best {min(per_request):.0f}); load average at end: "
              f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        proc.terminate()
        proc.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
