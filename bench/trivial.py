"""The load generator's ceiling: a trivial ``twisted.web`` server.

``python -m bench.trivial`` serves ``GET`` (4 KiB body) and ``PUT``
(reads the body, answers 200) on 127.0.0.1 and prints ``PORT <n>``; the
suite fires the same requests at it as at the S3 servers, so the figure is
the most requests/s the generator can drive on this box through one Python
web server with no storage behind it.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import endpoints, reactor
from twisted.web import resource, server

BODY = b"x" * 4096


class Trivial(resource.Resource):
    isLeaf = True

    def render_GET(self, request: Any) -> bytes:
        return BODY

    def render_PUT(self, request: Any) -> bytes:
        request.content.read()
        return b""


class QuietSite(server.Site):
    def log(self, request: Any) -> None:
        return None


def main() -> None:
    d = endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(QuietSite(Trivial()))
    d.addCallback(lambda port: print(f"PORT {port.getHost().port}", flush=True))
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
