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

It also vouches for bearer tokens aegis issued, which callers present on
the gRPC API (SPEC §4.3, §9.1)::

    POST /v1/authenticate
    {"service_account": ..., "token": "<the caller's bearer token>"}

    200 {"authenticated": true, "principal": {"id", "org_id", "project_id", "roles", ...},
         "expires_at": <Unix seconds, optional>}
    200 {"authenticated": false, "reason": "..."}

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

import hashlib
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
from lightningstor.core.principals import validate_id
from lightningstor.core.types import Principal
from lightningstor.deferreds import Shared
from lightningstor.errors import ConfigError
from lightningstor.interfaces.authorizer import (
    AuthorizerContext,
    IAuthorizer,
    IAuthorizerFactory,
    ITokenAuthenticator,
)

log = Logger()

AUTHORIZE_PATH = "/v1/authorize"
AUTHENTICATE_PATH = "/v1/authenticate"
# A principal's roles as aegis names them: sent back to aegis with every
# question about the principal, never interpreted here; bounded so one odd
# answer cannot bloat every later request.
MAX_ROLES = 64
MAX_ROLE_LENGTH = 128
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


class Identity(NamedTuple):
    """aegis's answer about a bearer token."""

    principal: Principal | None  # None: aegis does not accept the token
    reason: str
    expires_at: float | None  # Unix seconds, when aegis said


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


def _answer(status: int, raw: bytes) -> dict[str, Any]:
    """The JSON object of a 200 answer; :class:`AegisUnavailable` otherwise."""
    if status == 401:
        raise _TokenRejected("aegis rejected the service account token (HTTP 401)")
    if status != 200:
        raise AegisUnavailable(f"aegis answered HTTP {status}")
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:  # RecursionError: absurdly nested
        raise AegisUnavailable(f"aegis answered malformed JSON: {e}") from None
    if not isinstance(doc, dict):
        raise AegisUnavailable("aegis answer is not a JSON object")
    return doc


def _reason(doc: Mapping[str, Any]) -> str:
    reason = doc.get("reason", "")
    return reason if isinstance(reason, str) else ""


def parse_verdict(status: int, raw: bytes) -> Verdict:
    """aegis's answer, or :class:`AegisUnavailable` for anything but a 200
    carrying a JSON object whose ``allowed`` is a JSON boolean.

    Strict on purpose: ``"allowed": "false"`` or ``1`` is a broken or
    impostor service, and guessing its meaning could open the store.
    """
    doc = _answer(status, raw)
    if not isinstance(doc.get("allowed"), bool):
        raise AegisUnavailable('aegis answer lacks a boolean "allowed"')
    return Verdict(doc["allowed"], _reason(doc))


def authenticate_body(token: str, service_account: str | None) -> dict[str, Any]:
    """The JSON document asking aegis whom a bearer token names."""
    return {"service_account": service_account or "", "token": token}


def parse_identity(status: int, raw: bytes) -> Identity:
    """aegis's answer about a token, or :class:`AegisUnavailable` for
    anything but a 200 whose ``authenticated`` is a JSON boolean and, when
    true, whose ``principal`` is usable here.

    As strict as :func:`parse_verdict`, for the same reason: a principal
    this server cannot place in a tenant (no org, an id no bucket path can
    hold) is a broken answer, not a caller to let in under a guess.
    """
    doc = _answer(status, raw)
    authenticated = doc.get("authenticated")
    if not isinstance(authenticated, bool):
        raise AegisUnavailable('aegis answer lacks a boolean "authenticated"')
    if not authenticated:
        return Identity(None, _reason(doc), None)
    expires_at = doc.get("expires_at")
    if expires_at is not None and (not isinstance(expires_at, (int, float)) or isinstance(expires_at, bool)):
        raise AegisUnavailable('aegis answer has a non-numeric "expires_at"')
    return Identity(_principal(doc.get("principal")), _reason(doc), expires_at)


def _principal(doc: Any) -> Principal:
    if not isinstance(doc, dict):
        raise AegisUnavailable('aegis answer lacks a "principal" object')
    try:
        principal_id = validate_id(_text(doc, "id"), "principal id")
        org_id = validate_id(_text(doc, "org_id"), "org id")
        project_id = _text(doc, "project_id") or None
        if project_id is not None:
            validate_id(project_id, "project id")
    except ValueError as e:
        raise AegisUnavailable(f"aegis answer names an unusable principal: {e}") from None
    roles = doc.get("roles", [])
    if (
        not isinstance(roles, list)
        or len(roles) > MAX_ROLES
        or not all(isinstance(r, str) and 0 < len(r) <= MAX_ROLE_LENGTH and r.isprintable() for r in roles)
    ):
        raise AegisUnavailable(f'aegis answer has unusable "roles" (at most {MAX_ROLES} printable names)')
    display_name = doc.get("display_name", "")
    if not isinstance(display_name, str) or not display_name.isprintable():
        raise AegisUnavailable('aegis answer has an unusable "display_name"')
    return Principal(principal_id, org_id, project_id, None, display_name, tuple(roles))


def _text(doc: Mapping[str, Any], key: str) -> str:
    value = doc.get(key, "")
    if not isinstance(value, str):
        raise ValueError(f"{key} is not a string")
    return value


def cache_key(body: Mapping[str, Any]) -> str:
    """Everything sent to aegis, canonically: two questions share a cached
    answer only if aegis could not have told them apart."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


# ---------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------


class DecisionCache:
    """aegis's answers for ``ttl`` seconds (or less, when an answer says it
    holds for less), at most ``max_entries``; the oldest entry is evicted
    first when full.
    """

    def __init__(self, ttl: float, max_entries: int = MAX_CACHE_ENTRIES) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, Any]] = OrderedDict()

    def get(self, key: str, now: float) -> Any:
        """The answer cached under ``key``, or None."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= now:
            del self._entries[key]
            return None
        return entry[1]

    def put(self, key: str, answer: Any, now: float, holds_for: float | None = None) -> None:
        ttl = self.ttl if holds_for is None else min(self.ttl, holds_for)
        if ttl <= 0:
            return
        self._entries.pop(key, None)
        self._entries[key] = (now + ttl, answer)
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


@implementer(IAuthorizer, ITokenAuthenticator)
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
        self.authenticate_url = endpoint.rstrip("/") + AUTHENTICATE_PATH
        self._reactor = reactor
        self._clock = clock
        self._token = token
        self._service_account = service_account
        self.timeout_seconds = timeout_seconds
        self.cache = DecisionCache(cache_seconds, max_cache_entries)
        # Answers about bearer tokens, keyed by the token's SHA-256.
        self.identities = DecisionCache(cache_seconds, max_cache_entries)
        self._inflight: dict[str, Shared] = {}
        self._pool = pool

    def authorize(self, principal: Principal, action: str, resource: ResourceRef) -> Deferred[bool]:
        """Deferred[bool] from the cache, from a call already in flight for
        the same question, or from a new call to aegis."""
        body = request_body(principal, action, resource, self._service_account)
        d = self._consult("authorize " + cache_key(body), self.url, body, parse_verdict, self.cache)
        return d.addCallback(self._decided, action, resource.path)

    @staticmethod
    def _decided(verdict: Verdict, action: str, path: str) -> bool:
        if not verdict.allowed:
            log.debug("aegis denied {action} on {path}: {reason}", action=action, path=path, reason=verdict.reason)
        return verdict.allowed

    def authenticate_token(self, token: str) -> Deferred[Principal | None]:
        """Deferred[Principal | None]: whom aegis says ``token`` names, None
        when aegis does not accept it (or it has expired by aegis's own
        ``expires_at``).  Cached like decisions, and never past the token's
        expiry; the raw token is sent to aegis only, never cached or logged."""
        digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()
        body = authenticate_body(token, self._service_account)
        d = self._consult("token " + digest, self.authenticate_url, body, parse_identity, self.identities)
        return d.addCallback(self._vouched)

    def _vouched(self, identity: Identity) -> Principal | None:
        if identity.principal is None:
            log.debug("aegis did not accept a bearer token: {reason}", reason=identity.reason)
            return None
        if identity.expires_at is not None and identity.expires_at <= self._clock():
            return None
        return identity.principal

    def _consult(
        self, key: str, url: str, body: dict[str, Any], parse: Callable[[int, bytes], Any], cache: DecisionCache
    ) -> Deferred[Any]:
        """Deferred of aegis's parsed answer to ``body`` at ``url``: from
        ``cache``, from a call already in flight under ``key``, or from a new
        call bounded by ``timeout_seconds``."""
        cached = cache.get(key, self._clock())
        if cached is not None:
            return succeed(cached)
        shared = self._inflight.get(key)
        if shared is not None:
            return shared.get()
        source: Deferred[Any] = Deferred()
        shared = self._inflight[key] = Shared(source)
        out = shared.get()
        ask: Deferred[Any] = self._ask(url, body, parse)
        # The timer fails the answer itself rather than waiting for the
        # cancelled call to unwind (an aborted connection reports its loss
        # later): callers hear "unavailable" exactly at the deadline.
        timer = self._reactor.callLater(self.timeout_seconds, self._expire, key, shared, source, ask)
        ask.addBoth(self._settle, key, shared, source, timer, url, cache)
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
        self, result: Any, key: str, shared: Shared, source: Deferred[Any], timer: Any, url: str, cache: DecisionCache
    ) -> None:
        if source.called:
            return None  # timed out; the late result (or its cancellation) is dropped
        timer.cancel()
        self._forget(key, shared)
        if isinstance(result, Failure):
            if not result.check(AegisUnavailable):
                result = Failure(AegisUnavailable(f"cannot reach aegis at {url}: {result.value}"))
            source.errback(result)
            return None
        now = self._clock()
        expires_at = getattr(result, "expires_at", None)
        cache.put(key, result, now, None if expires_at is None else expires_at - now)
        source.callback(result)
        return None

    @inlineCallbacks
    def _ask(self, url: str, body: dict[str, Any], parse: Callable[[int, bytes], Any]) -> Any:
        """Deferred of the parsed answer; retried once when the failure says
        nothing about aegis's opinion (a pooled connection the server had
        already closed, or a token rotated under us): both questions are
        reads without side effects, so asking twice is safe."""
        token = (yield self._token.current()) if self._token is not None else None
        payload = json.dumps(body, separators=(",", ":")).encode("utf-8")
        for attempt in (1, 2):
            try:
                answer = yield self._post(url, payload, token, parse)
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
            return answer
        raise AssertionError("unreachable")

    @inlineCallbacks
    def _post(self, url: str, payload: bytes, token: str | None, parse: Callable[[int, bytes], Any]) -> Any:
        headers = {"Content-Type": ["application/json"], "Accept": ["application/json"]}
        if token is not None:
            headers["Authorization"] = [f"Bearer {token}"]
        response = yield self._http.request(
            "POST", url, data=payload, headers=headers, allow_redirects=False, unbuffered=True,
        )
        raw = yield _read_limited(response, MAX_RESPONSE_BYTES)
        return parse(response.code, raw)

    def close(self) -> Deferred[None]:
        """Forget cached answers and close pooled connections to aegis."""
        self.cache.clear()
        self.identities.clear()
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
