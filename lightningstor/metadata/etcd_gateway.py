"""A client for etcd's v3 JSON gateway (``POST /v3/kv/txn`` and friends).

It owns what is about *reaching* etcd, so the store above it
(:mod:`lightningstor.metadata.etcd`) only deals with keys and transactions:

* Several endpoints (the cluster's members).  Calls go to the endpoint that
  answered last; on a failure the call moves to the next one, and after a
  pass over all of them waits (exponential backoff with jitter) before the
  next pass.  Each attempt has its own timeout and the whole call a
  deadline; when it passes the call fails with
  :class:`~lightningstor.errors.MetadataUnavailable`, which the S3 layer
  answers with 503.
* Whether a failed attempt may be repeated.  An attempt that never reached
  etcd, or that etcd refused before proposing it ("no leader"), changed
  nothing and can go to another member.  An attempt whose answer was lost
  (connection reset, timeout, "request timed out, possibly due to previous
  leader failure") may or may not have been applied: a read is repeated
  anyway, a write only if the caller made it safe to repeat
  (``repeatable=True``; the store does that with a marker key, see its
  module doc).  Otherwise the call fails with :class:`OutcomeUnknown`.
  etcd's own Go client follows the same rule for its mutations.
* Answers that can never succeed (a request larger than
  ``--max-request-bytes``, more operations than ``--max-txn-ops``, a
  duplicate key) are not retried: :class:`EtcdError` with ``permanent``.

Everything is asynchronous (twisted.web's ``Agent`` over a persistent
connection pool), so the reactor thread never blocks.  ``Agent`` is the
engine under treq; it is called directly because treq's URL handling
(hyperlink and IDNA on every request) cost about a third of the CPU per call
when measured, and these calls are the hot path of every S3 request.
"""

from __future__ import annotations

import enum
import json
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from twisted.internet import error as net_error
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import (
    Agent,
    BrowserLikePolicyForHTTPS,
    HTTPConnectionPool,
    RequestGenerationFailed,
    RequestTransmissionFailed,
    ResponseDone,
    ResponseFailed,
    _HTTP11ClientFactory,
)
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer, IPolicyForHTTPS
from zope.interface import implementer

from lightningstor.errors import MetadataUnavailable

log = Logger()

_JSON_HEADERS = Headers({b"Content-Type": [b"application/json"]})


class Attempt(enum.Enum):
    """What a failed attempt tells us about the request's effect."""

    NOT_APPLIED = "not applied"  # never reached etcd, or refused before proposing: retry anywhere
    UNKNOWN = "unknown"  # the answer was lost: it may have been applied
    PERMANENT = "permanent"  # etcd will refuse it again: do not retry


# gRPC status codes etcd reports in the gateway's error body.
_INVALID_ARGUMENT = 3
_NOT_FOUND = 5
_PERMISSION_DENIED = 7
_RESOURCE_EXHAUSTED = 8
_FAILED_PRECONDITION = 9
_OUT_OF_RANGE = 11
_UNAUTHENTICATED = 16

# etcd errors returned before a request is proposed to raft, so they changed
# nothing (etcd's api/v3rpc/rpctypes and etcdserver/errors.go).
_REFUSED_BEFORE_PROPOSAL = (
    "etcdserver: no leader",
    "etcdserver: too many requests",
    "etcdserver: not capable",
    "etcdserver: unhealthy cluster",
    "raft proposal dropped",
)


class EtcdError(Exception):
    """An error answer from etcd: its gRPC ``code`` and ``message``."""

    def __init__(self, code: int, message: str, http_status: int) -> None:
        super().__init__(f"etcd: {message} (code {code}, HTTP {http_status})")
        self.code = code
        self.message = message
        self.http_status = http_status
        self.after_unknown = False  # set by GatewayClient: an earlier attempt's outcome was unknown

    @property
    def kind(self) -> Attempt:
        if any(m in self.message for m in _REFUSED_BEFORE_PROPOSAL):
            return Attempt.NOT_APPLIED
        if self.lease_not_found or self.code in (
            _INVALID_ARGUMENT,
            _PERMISSION_DENIED,
            _FAILED_PRECONDITION,
            _OUT_OF_RANGE,
            _UNAUTHENTICATED,
        ):
            return Attempt.PERMANENT
        if self.code == _RESOURCE_EXHAUSTED:
            # gRPC message size, or the space quota (NOSPACE alarm: refused
            # until an operator disarms it, so not retried; the store answers
            # it as MetadataFull, 507).
            return Attempt.PERMANENT
        if self.http_status == 404 and self.code == 0:
            return Attempt.PERMANENT  # not an etcd v3 gateway at this URL
        return Attempt.UNKNOWN

    @property
    def too_large(self) -> bool:
        """The request exceeds ``--max-request-bytes`` or ``--max-txn-ops``."""
        return (
            "request is too large" in self.message
            or "too many operations in txn request" in self.message
            or "received message larger than max" in self.message
        )

    @property
    def lease_not_found(self) -> bool:
        return self.code == _NOT_FOUND and "lease not found" in self.message

    @property
    def compacted(self) -> bool:
        return "required revision has been compacted" in self.message

    @property
    def no_space(self) -> bool:
        """etcd's NOSPACE alarm is raised ("etcdserver: mvcc: database space
        exceeded", gRPC RESOURCE_EXHAUSTED, HTTP 429 from the gateway)."""
        return "database space exceeded" in self.message


class OutcomeUnknown(MetadataUnavailable):
    """A write's answer was lost and it could not safely be repeated: it may
    or may not have been applied.  Callers must not undo side effects that
    only matter if it failed (such as deleting the chunks it references);
    the orphan collector settles those once the truth is readable."""


class AttemptTimedOut(Exception):
    """One attempt got no complete answer in time; ``connecting`` if it was
    still connecting (so nothing was sent)."""

    def __init__(self, timeout: float, *, connecting: bool) -> None:
        super().__init__(f"no answer within {timeout:g}s" + (" (still connecting)" if connecting else ""))
        self.connecting = connecting


def classify(exc: BaseException) -> Attempt:
    """Map an attempt's failure to what it says about the request's effect."""
    if isinstance(exc, EtcdError):
        return exc.kind
    if isinstance(exc, AttemptTimedOut):
        return Attempt.NOT_APPLIED if exc.connecting else Attempt.UNKNOWN
    if isinstance(
        exc,
        (
            net_error.ConnectError,  # refused, unreachable, connect timeout
            net_error.DNSLookupError,
            net_error.ConnectingCancelledError,
            RequestTransmissionFailed,  # etcd decodes nothing from half a body
            RequestGenerationFailed,
        ),
    ):
        return Attempt.NOT_APPLIED
    return Attempt.UNKNOWN  # ResponseNeverReceived, ResponseFailed, garbage answers


class CallFailed(MetadataUnavailable):
    """Every attempt of a call failed; ``last`` is the final attempt's error."""

    def __init__(self, message: str, last: BaseException | None, *, unknown_seen: bool) -> None:
        super().__init__(message)
        self.last = last
        self.unknown_seen = unknown_seen


@implementer(IBodyProducer)
class _Body:
    """A request body already in memory, written at once (``FileBodyProducer``
    would go through a cooperator for every request)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.length = len(data)

    def startProducing(self, consumer: Any) -> Deferred[None]:
        consumer.write(self.data)
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


class _Collector(Protocol):
    """Gathers a response body (``readBody`` warns on every call with Agent's
    transport proxy, which lacks ``abortConnection``)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.done: Deferred[bytes] = Deferred(lambda _d: self._abort())

    def _abort(self) -> None:
        producer: Any = self.transport  # Agent's TransportProxyProducer
        if producer is not None:
            producer.stopProducing()  # drops the connection: the body is abandoned

    def dataReceived(self, data: bytes) -> None:
        self.parts.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.done.called:
            return
        if reason.check(ResponseDone):
            self.done.callback(b"".join(self.parts))
        else:
            self.done.errback(reason)


def _read_body(response: Any) -> Deferred[bytes]:
    collector = _Collector()
    response.deliverBody(collector)
    return collector.done


class _QuietClientFactory(_HTTP11ClientFactory):
    noisy = False


@implementer(IPolicyForHTTPS)
class ClientTLS:
    """TLS to etcd: verify members against ``ca_pem`` (the platform's trust
    store without it) and present a client certificate when etcd runs with
    ``--client-cert-auth``."""

    def __init__(self, ca_pem: bytes | None = None, cert_pem: bytes | None = None, key_pem: bytes | None = None) -> None:
        self._trust = Certificate.loadPEM(ca_pem) if ca_pem else None
        # The client certificate as cryptography objects, which pyOpenSSL's
        # Context takes natively: Twisted's PrivateCertificate would hand it
        # pyOpenSSL's own X509/PKey wrappers, which it deprecates.  A chain
        # file's first certificate is the client's, the rest go with it.
        self._client: dict[str, Any] = {}
        if cert_pem and key_pem:
            chain = x509.load_pem_x509_certificates(cert_pem)
            self._client = {
                "certificate": chain[0],
                "privateKey": serialization.load_pem_private_key(key_pem, password=None),
                "extraCertChain": chain[1:],
            }
        self._default = BrowserLikePolicyForHTTPS()

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:
        if self._trust is None and not self._client:
            return self._default.creatorForNetloc(hostname, port)
        return optionsForClientTLS(
            hostname.decode("ascii"), trustRoot=self._trust, extraCertificateOptions=self._client
        )


class GatewayClient:
    """JSON calls to a set of etcd members with failover (see the module doc).

    ``request_timeout`` bounds one attempt, ``timeout`` a whole call
    (attempts plus backoff).  Calls start at a random member
    (``spread=True``) so many API servers spread over the cluster, then stay
    with whichever answered last.  ``failed_attempts`` and
    ``unknown_outcomes`` count attempts that failed and those among them
    whose effect is unknown (for tests and metrics).  ``clock`` and ``rng``
    are for tests.
    """

    def __init__(
        self,
        reactor: Any,
        endpoints: Sequence[str],
        *,
        request_timeout: float = 5.0,
        timeout: float = 10.0,
        connect_timeout: float = 2.0,
        backoff: tuple[float, float] = (0.05, 1.0),
        tls: IPolicyForHTTPS | None = None,
        max_connections_per_endpoint: int = 16,
        spread: bool = True,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        if not endpoints:
            raise ValueError("at least one etcd endpoint is required")
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self.request_timeout = request_timeout
        self.timeout = timeout
        self._reactor = reactor
        self._backoff = backoff
        self._clock = clock
        self._rng = rng or random.Random()
        self._preferred = self._rng.randrange(len(self.endpoints)) if spread else 0
        self.failed_attempts = 0
        self.unknown_outcomes = 0
        self._pool = HTTPConnectionPool(reactor, persistent=True)
        self._pool.maxPersistentPerHost = max_connections_per_endpoint
        self._pool._factory = _QuietClientFactory  # no "Starting factory" log line per connection
        self._agent = Agent(
            reactor,
            contextFactory=tls or ClientTLS(),
            connectTimeout=connect_timeout,
            pool=self._pool,
        )
        self._urls = [e.encode("ascii") for e in self.endpoints]

    async def call(
        self, path: str, body: dict[str, Any], *, repeatable: bool = True, timeout: float | None = None
    ) -> dict[str, Any]:
        """POST ``body`` to ``path`` on some member; its decoded JSON answer.

        ``repeatable=False`` (a write that must not be applied twice): an
        attempt with an unknown outcome ends the call with
        :class:`OutcomeUnknown` instead of moving on.  Permanent refusals
        raise :class:`EtcdError` at once; running out of time or members
        raises :class:`CallFailed`.
        """
        answer, _unknown = await self.call_traced(path, body, repeatable=repeatable, timeout=timeout)
        return answer

    async def call_traced(
        self, path: str, body: dict[str, Any], *, repeatable: bool = True, timeout: float | None = None
    ) -> tuple[dict[str, Any], bool]:
        """:meth:`call`, also saying whether an earlier attempt's outcome was
        unknown (so a repeated write may have been applied by it, or may still
        be applied later).  A permanent :class:`EtcdError` carries the same
        flag as ``after_unknown``."""
        payload = json.dumps(body, separators=(",", ":")).encode("ascii")
        budget = self.timeout if timeout is None else timeout
        deadline = self._clock() + budget
        n = len(self.endpoints)
        start = self._preferred
        attempt = 0
        unknown_seen = False
        last: BaseException | None = None
        while True:
            index = (start + attempt) % n
            remaining = deadline - self._clock()
            try:
                answer = await self._post(
                    self._urls[index] + path.encode("ascii"), payload, min(self.request_timeout, remaining)
                )
            except Exception as e:
                last = e
                kind = classify(e)
                self.failed_attempts += 1
                if kind is Attempt.PERMANENT:
                    if isinstance(e, EtcdError):
                        e.after_unknown = unknown_seen
                    raise
                if kind is Attempt.UNKNOWN:
                    unknown_seen = True
                    self.unknown_outcomes += 1
                    if not repeatable:
                        raise OutcomeUnknown(
                            f"etcd write outcome unknown after {self.endpoints[index]} failed: {_describe(e)}"
                        ) from e
            else:
                if index != self._preferred:
                    log.info("etcd: now using {url}", url=self.endpoints[index])
                    self._preferred = index
                return answer, unknown_seen
            attempt += 1
            delay = 0.0
            if attempt % n == 0:  # a full pass failed: back off before the next one
                low, high = self._backoff
                delay = min(high, low * 2 ** (attempt // n - 1)) * (0.5 + self._rng.random() / 2)
            if self._clock() + delay >= deadline:
                raise CallFailed(
                    f"no etcd endpoint answered within {budget:g}s ({', '.join(self.endpoints)}); "
                    f"last error: {_describe(last)}",
                    last,
                    unknown_seen=unknown_seen,
                )
            if delay:
                await deferLater(self._reactor, delay)

    async def _post(self, url: bytes, payload: bytes, timeout: float) -> dict[str, Any]:
        """One attempt, bounded by ``timeout`` (headers and body)."""
        d = Deferred.fromCoroutine(self._exchange(url, payload))
        timer = self._reactor.callLater(max(timeout, 0.001), d.cancel)
        try:
            return await d
        except Exception as e:
            if timer.active():
                raise
            connecting = isinstance(e, net_error.ConnectingCancelledError)
            raise AttemptTimedOut(timeout, connecting=connecting) from e
        finally:
            if timer.active():
                timer.cancel()

    async def _exchange(self, url: bytes, payload: bytes) -> dict[str, Any]:
        response = await self._agent.request(b"POST", url, _JSON_HEADERS, _Body(payload))
        content = await _read_body(response)
        try:
            answer = json.loads(content) if content else {}
        except ValueError:
            answer = None
        if response.code != 200 or not isinstance(answer, dict) or "error" in answer:
            raise _error_from(response.code, answer, content)
        return answer

    def close(self) -> Deferred[None]:
        """Close idle connections (in-flight calls finish on their own)."""
        closed: Deferred[None] = self._pool.closeCachedConnections()
        return closed


def _error_from(status: int, answer: Any, content: bytes) -> EtcdError:
    if isinstance(answer, dict) and ("error" in answer or "message" in answer):
        message = str(answer.get("message") or answer.get("error"))
        return EtcdError(int(answer.get("code", 2)), message, status)
    return EtcdError(0, content[:200].decode("utf-8", "replace").strip() or f"HTTP {status}", status)


def _describe(e: BaseException | None) -> str:
    if e is None:
        return "none"
    if isinstance(e, (CancelledError, net_error.TimeoutError)):
        return "timed out"
    if isinstance(e, (ResponseFailed, RequestTransmissionFailed)):
        reasons = ", ".join(f.getErrorMessage() for f in e.reasons) or type(e).__name__
        return f"{type(e).__name__}: {reasons}"
    return str(e) or type(e).__name__
