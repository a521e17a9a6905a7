"""The ``aegis`` authorizer: every decision comes from the platform IAM service.

aegis owns the platform's principals and policies (SPEC §7.3, §9.2); this
plugin turns each (principal, action, resource) question of the core into one
``POST {endpoint}/v1/authorize`` and the answer into a bool.  The wire
protocol is documented in ``docs/aegis.md``; in short::

    POST /v1/authorize
    Authorization: Bearer <service account token, read from token_path>
    {"service_account": ..., "principal": {...}, "action": "lightningstor:objects:get",
     "resource": {"kind", "id", "org_id", "project_id", "bucket", "path", "owner"}}

    200 {"allowed": true|false, "reason": "..."}

Three properties matter more than the rest:

* **It fails closed.**  A timeout, a refused connection, a non-200 status or
  an answer that is not exactly ``{"allowed": <bool>}`` fails the
  ``authorize`` Deferred (:class:`AegisUnavailable`); the core's gate turns
  that into a 503 refusal.  Nothing here ever answers "allowed" without aegis
  having said so.
* **Decisions are cached briefly** (``cache_seconds``): allows and denies
  alike, keyed by everything sent, bounded in size, and identical questions
  in flight at the same time share one call.  Failures are never cached.
* **The token file is never read on the reactor thread per request.**  It is
  read once at start-up, then its ``stat`` is checked in a thread at most every
  :data:`TOKEN_CHECK_SECONDS` and re-read when it changed (Kubernetes-style
  projected tokens are rotated by swapping the file).  A 401 from aegis forces
  an immediate re-check, so a rotation is picked up at once.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from treq import collect
from treq.client import HTTPClient
from twisted.internet.defer import CancelledError, Deferred, inlineCallbacks, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.plugin import IPlugin
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool, RequestTransmissionFailed, ResponseNeverReceived
from zope.interface import implementer

from lightningstor.core.access import ResourceRef
from lightningstor.core.types import Principal
from lightningstor.deferreds import Shared
from lightningstor.errors import ConfigError
from lightningstor.interfaces.authorizer import AuthorizerContext, IAuthorizer, IAuthorizerFactory

log = Logger()

AUTHORIZE_PATH = "/v1/authorize"
# An answer is a few dozen bytes; anything far larger is not aegis talking.
MAX_RESPONSE_BYTES = 64 * 1024
# How often the token file's stat is checked (in a thread) for a rotation.
# Kubernetes rotates projected tokens well before they expire, so a few
# seconds of lag only ever sends a still-valid token.
TOKEN_CHECK_SECONDS = 10.0
MAX_CACHE_ENTRIES = 10_000
# Idle pooled connections are dropped before a typical server-side idle
# timeout would close them under us.
POOL_IDLE_SECONDS = 30
POOL_CONNECTIONS_PER_HOST = 8

RunInThread = Callable[..., "Deferred[Any]"]


class AegisUnavailable(Exception):
    """No decision could be had from aegis.  The gate refuses the request
    (503) rather than guess: an authorizer that cannot decide never allows."""


class _TokenRejected(AegisUnavailable):
    """aegis answered 401: our service account token is not (or no longer) valid."""


class Verdict(NamedTuple):
    allowed: bool
    reason: str


# ---------------------------------------------------------------------------
# Wire format
# ---------------------------------------------------------------------------


def request_body(
    principal: Principal, action: str, resource: ResourceRef, service_account: str | None
) -> dict[str, Any]:
    """The JSON document asking aegis one question (docs/aegis.md).

    ``resource`` mirrors SPEC §7.3's ResourceRef (kind, id, org_id,
    project_id, with an empty project for org-level resources) and adds the
    §7.3 resource path and the bucket's owner, so policies can match paths
    and grant owners their own buckets (SPEC §9.2).
    """
    if resource.key is not None:
        rid = resource.key
    elif resource.bucket is not None:
        rid = resource.bucket
    else:
        rid = resource.project_id or resource.org_id
    return {
        "service_account": service_account or "",
        "principal": {
            "id": principal.principal_id,
            "org_id": principal.org_id,
            "project_id": principal.project_id or "",
            "roles": list(principal.roles),
            "access_key_id": principal.access_key_id or "",
        },
        "action": action,
        "resource": {
            "kind": resource.kind,
            "id": rid,
            "org_id": resource.org_id,
            "project_id": resource.project_id or "",
            "bucket": resource.bucket or "",
            "path": resource.path,
            "owner": resource.owner,
        },
    }


def parse_verdict(status: int, raw: bytes) -> Verdict:
    """aegis's answer, or :class:`AegisUnavailable` for anything but a 200
    carrying a JSON object whose ``allowed`` is a JSON boolean.

    Strict on purpose: ``"allowed": "false"`` or ``1`` is a broken or
    impostor service, and guessing its meaning could open the store.
    """
    if status == 401:
        raise _TokenRejected("aegis rejected the service account token (HTTP 401)")
    if status != 200:
        raise AegisUnavailable(f"aegis answered HTTP {status}")
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise AegisUnavailable(f"aegis answered malformed JSON: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("allowed"), bool):
        raise AegisUnavailable('aegis answer lacks a boolean "allowed"')
    reason = doc.get("reason", "")
    return Verdict(doc["allowed"], reason if isinstance(reason, str) else "")


def cache_key(body: Mapping[str, Any]) -> str:
    """Everything sent to aegis, canonically: two questions share a cached
    answer only if aegis could not have told them apart."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


# ---------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------


class DecisionCache:
    """Allow and deny decisions for ``ttl`` seconds, at most ``max_entries``.

    Entries all live the same time, so insertion order is expiry order: the
    oldest entry is both the first to expire and the one evicted when full.
    """

    def __init__(self, ttl: float, max_entries: int = MAX_CACHE_ENTRIES) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, bool]] = OrderedDict()

    def get(self, key: str, now: float) -> bool | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= now:
            del self._entries[key]
            return None
        return entry[1]

    def put(self, key: str, allowed: bool, now: float) -> None:
        if self.ttl <= 0:
            return
        self._entries.pop(key, None)
        self._entries[key] = (now + self.ttl, allowed)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


def _read_token(path: str, known: tuple[int, int, int] | None) -> tuple[tuple[int, int, int], str | None]:
    """(stat stamp, token) of the token file; token None when the stamp
    equals ``known`` (unchanged: not re-read).  Blocking: threads and
    start-up only.  ``stat`` follows the symlinks Kubernetes swaps on
    rotation, so a new token always shows as a new inode or mtime."""
    st = os.stat(path)
    stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
    if stamp == known:
        return stamp, None
    with open(path, encoding="utf-8") as f:
        token = f.read().strip()
    if not token:
        raise ValueError(f"{path} is empty")
    return stamp, token


class ServiceAccountToken:
    """The bearer token LightningStor presents to aegis, kept current.

    :meth:`current` answers from memory; at most every ``check_seconds`` it
    first checks the file (in ``run_in_thread``) and re-reads it if it
    changed.  If the file becomes unreadable after a token was loaded, the
    last token stays in use (aegis will say if it is no longer valid) and a
    warning is logged; with no token at all, requests fail closed.
    """

    def __init__(
        self,
        path: str,
        clock: Callable[[], float],
        run_in_thread: RunInThread,
        check_seconds: float = TOKEN_CHECK_SECONDS,
    ) -> None:
        self.path = path
        self._clock = clock
        self._run_in_thread = run_in_thread
        self._check_seconds = check_seconds
        self._token: str | None = None
        self._stamp: tuple[int, int, int] | None = None
        self._next_check = 0.0
        self._refreshing: Shared | None = None

    def load_now(self) -> None:
        """Blocking first read, for start-up: a missing token file is a
        configuration error the operator should see before traffic arrives."""
        try:
            self._stamp, self._token = _read_token(self.path, None)
        except (OSError, ValueError) as e:
            raise ConfigError(f"iam.token_path: cannot read the service account token: {e}") from e
        self._next_check = self._clock() + self._check_seconds

    def current(self) -> Deferred[str]:
        """Deferred[str]: the token to send now."""
        if self._token is not None and self._clock() < self._next_check:
            return succeed(self._token)
        return self.refresh()

    def refresh(self, force: bool = False) -> Deferred[str]:
        """Deferred[str]: check the file now (re-read it even if its stat
        looks unchanged when ``force``); concurrent callers share one check."""
        if self._refreshing is not None:
            return self._refreshing.get()
        source: Deferred[Any] = Deferred()
        shared = self._refreshing = Shared(source)
        out = shared.get()
        d = self._run_in_thread(_read_token, self.path, None if force else self._stamp)
        d.addBoth(self._loaded, source)
        return out

    def _loaded(self, result: Any, source: Deferred[Any]) -> None:
        self._refreshing = None
        self._next_check = self._clock() + self._check_seconds
        if isinstance(result, Failure):
            if self._token is None:
                source.errback(
                    AegisUnavailable(f"cannot read the service account token {self.path}: {result.value}")
                )
                return
            log.warn(
                "aegis: cannot re-read the service account token {path} ({err}); keeping the last one",
                path=self.path, err=result.value,
            )
        else:
            stamp, token = result
            if token is not None:
                if self._token is not None and token != self._token:
                    log.info("aegis: service account token {path} rotated", path=self.path)
                self._token = token
            self._stamp = stamp
        source.callback(self._token)


# ---------------------------------------------------------------------------
# The authorizer
# ---------------------------------------------------------------------------


@implementer(IAuthorizer)
class AegisAuthorizer:
    """Asks aegis, caches its answers briefly, never allows on its own.

    ``http`` is a treq ``HTTPClient`` (tests pass ``treq.testing.StubTreq``);
    ``reactor`` schedules the per-call timeout; ``clock`` dates cache
    entries; ``token`` is None when no ``token_path`` is configured (then no
    Authorization header is sent).
    """

    name = "aegis"

    def __init__(
        self,
        http: Any,
        endpoint: str,
        *,
        reactor: Any,
        clock: Callable[[], float],
        token: ServiceAccountToken | None = None,
        service_account: str | None = None,
        cache_seconds: float = 5.0,
        timeout_seconds: float = 5.0,
        max_cache_entries: int = MAX_CACHE_ENTRIES,
        pool: HTTPConnectionPool | None = None,
    ) -> None:
        self._http = http
        self.url = endpoint.rstrip("/") + AUTHORIZE_PATH
        self._reactor = reactor
        self._clock = clock
        self._token = token
        self._service_account = service_account
        self.timeout_seconds = timeout_seconds
        self.cache = DecisionCache(cache_seconds, max_cache_entries)
        self._inflight: dict[str, Shared] = {}
        self._pool = pool

    def authorize(self, principal: Principal, action: str, resource: ResourceRef) -> Deferred[bool]:
        """Deferred[bool] from the cache, from a call already in flight for
        the same question, or from a new call to aegis."""
        body = request_body(principal, action, resource, self._service_account)
        key = cache_key(body)
        cached = self.cache.get(key, self._clock())
        if cached is not None:
            return succeed(cached)
        shared = self._inflight.get(key)
        if shared is not None:
            return shared.get()
        source: Deferred[Any] = Deferred()
        shared = self._inflight[key] = Shared(source)
        out = shared.get()
        ask: Deferred[Any] = self._ask(body)
        # The timer fails the decision itself rather than waiting for the
        # cancelled call to unwind (an aborted connection reports its loss
        # later): callers hear "unavailable" exactly at the deadline.
        timer = self._reactor.callLater(self.timeout_seconds, self._expire, key, shared, source, ask)
        ask.addBoth(self._settle, key, shared, source, timer, action, resource.path)
        return out

    def _forget(self, key: str, shared: Shared) -> None:
        # A newer call for the same question may have replaced this one.
        if self._inflight.get(key) is shared:
            del self._inflight[key]

    def _expire(self, key: str, shared: Shared, source: Deferred[Any], ask: Deferred[Any]) -> None:
        self._forget(key, shared)
        source.errback(AegisUnavailable(f"no answer from aegis within {self.timeout_seconds:g}s"))
        ask.cancel()

    def _settle(
        self, result: Any, key: str, shared: Shared, source: Deferred[Any], timer: Any, action: str, path: str
    ) -> None:
        if source.called:
            return None  # timed out; the late result (or its cancellation) is dropped
        timer.cancel()
        self._forget(key, shared)
        if isinstance(result, Failure):
            if not result.check(AegisUnavailable):
                result = Failure(AegisUnavailable(f"cannot reach aegis at {self.url}: {result.value}"))
            source.errback(result)
            return None
        verdict: Verdict = result
        self.cache.put(key, verdict.allowed, self._clock())
        if not verdict.allowed:
            log.debug("aegis denied {action} on {path}: {reason}", action=action, path=path, reason=verdict.reason)
        source.callback(verdict.allowed)
        return None

    @inlineCallbacks
    def _ask(self, body: dict[str, Any]) -> Any:
        """Deferred[Verdict]; retried once when the failure says nothing
        about aegis's opinion (a pooled connection the server had already
        closed, or a token rotated under us): authorization questions have
        no side effects, so asking twice is safe."""
        token = (yield self._token.current()) if self._token is not None else None
        payload = json.dumps(body, separators=(",", ":")).encode("utf-8")
        for attempt in (1, 2):
            try:
                verdict = yield self._post(payload, token)
            except (ResponseNeverReceived, RequestTransmissionFailed) as e:
                # A call cancelled at its deadline fails the same way, and
                # must end there rather than start an unbounded second call.
                if attempt == 2 or any(r.check(CancelledError) for r in e.reasons):
                    raise
                continue
            except _TokenRejected:
                if attempt == 2 or self._token is None:
                    raise
                fresh = yield self._token.refresh(force=True)
                if fresh == token:
                    raise
                token = fresh
                continue
            return verdict
        raise AssertionError("unreachable")

    @inlineCallbacks
    def _post(self, payload: bytes, token: str | None) -> Any:
        headers = {"Content-Type": ["application/json"], "Accept": ["application/json"]}
        if token is not None:
            headers["Authorization"] = [f"Bearer {token}"]
        response = yield self._http.request(
            "POST", self.url, data=payload, headers=headers, allow_redirects=False, unbuffered=True,
        )
        raw = yield _read_limited(response, MAX_RESPONSE_BYTES)
        return parse_verdict(response.code, raw)

    def close(self) -> Deferred[None]:
        """Forget cached decisions and close pooled connections to aegis."""
        self.cache.clear()
        if self._pool is None:
            return succeed(None)
        d: Deferred[None] = self._pool.closeCachedConnections()
        return d


def _read_limited(response: Any, limit: int) -> Deferred[bytes]:
    """The response body, or a failure (and the connection dropped) once it
    exceeds ``limit`` bytes."""
    parts: list[bytes] = []
    size = [0]

    def take(data: bytes) -> None:
        size[0] += len(data)
        if size[0] > limit:
            raise AegisUnavailable(f"aegis answer larger than {limit} bytes")
        parts.append(data)

    d: Deferred[Any] = collect(response, take)
    return d.addCallback(lambda _: b"".join(parts))


# ---------------------------------------------------------------------------
# The plugin
# ---------------------------------------------------------------------------


def _seconds(options: Mapping[str, Any], key: str, default: float, minimum: float) -> float:
    value = options.get(key, default)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"iam.{key}: a number of seconds >= {minimum:g}")
    return float(value)


def _optional_str(options: Mapping[str, Any], key: str) -> str | None:
    value = options.get(key)
    if value is not None and (not isinstance(value, str) or not value):
        raise ConfigError(f"iam.{key}: a non-empty string")
    return value


@implementer(IPlugin, IAuthorizerFactory)
class AegisAuthorizerFactory:
    name = "aegis"
    description = "Asks the platform IAM service (aegis) over HTTP; fails closed"

    def create(self, options: Mapping[str, Any], context: AuthorizerContext) -> AegisAuthorizer:
        """An authorizer with its own persistent connection pool.  Reads the
        token file once, now (start-up), so a wrong ``token_path`` stops the
        server instead of refusing every request later."""
        endpoint = options.get("endpoint")
        if not isinstance(endpoint, str) or not endpoint.startswith(("http://", "https://")):
            raise ConfigError("iam.endpoint: an http(s) URL, required when iam.authorizer is 'aegis'")
        cache_seconds = _seconds(options, "cache_seconds", 5.0, 0.0)
        timeout_seconds = _seconds(options, "timeout_seconds", 5.0, 0.1)
        service_account = _optional_str(options, "service_account")
        token_path = _optional_str(options, "token_path")
        reactor = context.reactor

        def run_in_thread(f: Callable[..., Any], *args: Any) -> Deferred[Any]:
            return deferToThreadPool(reactor, reactor.getThreadPool(), f, *args)

        token = None
        if token_path is not None:
            token = ServiceAccountToken(token_path, context.clock, run_in_thread)
            token.load_now()
        pool = HTTPConnectionPool(reactor, persistent=True)
        pool.maxPersistentPerHost = POOL_CONNECTIONS_PER_HOST
        pool.cachedConnectionTimeout = POOL_IDLE_SECONDS
        agent = Agent(reactor, pool=pool, connectTimeout=timeout_seconds)
        return AegisAuthorizer(
            HTTPClient(agent),
            endpoint,
            reactor=reactor,
            clock=context.clock,
            token=token,
            service_account=service_account,
            cache_seconds=cache_seconds,
            timeout_seconds=timeout_seconds,
            pool=pool,
        )


aegisAuthorizerFactory = AegisAuthorizerFactory()
