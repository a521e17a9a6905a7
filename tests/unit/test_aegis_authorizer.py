"""The aegis authorizer: its wire protocol, its decision cache, its token
handling, and that it fails closed.

Most tests drive the real ``AegisAuthorizer`` through ``treq.testing.StubTreq``
over the test aegis service's own resource (``tests.aegis_service``), with a
``Clock`` for timeouts and cache expiry, so they are deterministic.  The last
ones use the factory's real Agent and connection pool against the same
resource listening on loopback, and a port nobody listens on.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from treq.testing import StubTreq
from twisted.internet import reactor
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import Site
from zope.interface.verify import verifyObject

from lightningstor import errors, plugins
from lightningstor.authz.aegis import (
    AegisAuthorizer,
    AegisUnavailable,
    ServiceAccountToken,
    aegisAuthorizerFactory,
    parse_identity,
    request_body,
)
from lightningstor.core.access import AccessControl, ResourceRef, scope_resource
from lightningstor.core.types import Principal
from lightningstor.errors import ConfigError
from lightningstor.interfaces.authorizer import (
    AuthorizerContext,
    IAuthorizer,
    IAuthorizerFactory,
    ITokenAuthenticator,
)
from tests.aegis_service import AegisResource

ALICE = Principal("alice", "acme", "web", "LSALICEKEY", "Alice", ("read-write",))
BOB = Principal("bob", "acme", None, "LSBOBKEY", "Bob")
OBJ = ResourceRef("object", "acme", "web", "logs", "2026/a.txt", "alice")
BUCKET = ResourceRef("bucket", "acme", None, "shared", None, "carol")
GET = "lightningstor:objects:get"
PUT = "lightningstor:objects:put"

POLICY: dict[str, Any] = {
    "rules": [
        {"principal": "alice", "action": "lightningstor:objects:*", "resource": "org/acme/project/web/*",
         "allow": True, "reason": "web team"},
        {"principal": "bob", "action": "*", "resource": "*", "allow": False, "reason": "bob is suspended"},
    ]
}


def sync_thread(f: Any, *args: Any) -> Deferred[Any]:
    """Runs 'thread' work inline, so token tests are deterministic."""
    return maybeDeferred(f, *args)


class Aegis:
    """The test service's resource in memory, plus what it received."""

    def __init__(self, policy: dict[str, Any]) -> None:
        self.policy = dict(policy)
        self.requests: list[dict[str, Any]] = []
        self.resource = AegisResource(lambda: self.policy, self.requests.append)
        self.stub = StubTreq(self.resource)


def make(
    aegis: Aegis,
    clock: Clock,
    *,
    token: ServiceAccountToken | None = None,
    cache_seconds: float = 5.0,
    timeout_seconds: float = 2.0,
    max_cache_entries: int = 100,
) -> AegisAuthorizer:
    return AegisAuthorizer(
        aegis.stub,
        "http://aegis.test/",
        reactor=clock,
        clock=clock.seconds,
        token=token,
        service_account="lightningstor-test",
        cache_seconds=cache_seconds,
        timeout_seconds=timeout_seconds,
        max_cache_entries=max_cache_entries,
    )


def result_of(d: Deferred[Any]) -> Any:
    """The result a Deferred already has (a Failure if it failed); fails
    the test if it has none yet."""
    out: list[Any] = []
    d.addBoth(out.append)
    assert out, "the Deferred has not fired"
    return out[0]


def ask(authz: AegisAuthorizer, aegis: Aegis, principal: Principal, action: str, resource: ResourceRef) -> Any:
    d = authz.authorize(principal, action, resource)
    aegis.stub.flush()
    return result_of(d)


def write_token(path: Path, token: str) -> None:
    """Replace the file the way Kubernetes does: a new file swapped in."""
    tmp = path.with_suffix(".new")
    tmp.write_text(token + "\n")
    os.replace(tmp, path)


# ---------------------------------------------------------------------------
# Plugin and wire protocol
# ---------------------------------------------------------------------------


def test_plugin_is_registered_and_conforms(tmp_path: Path) -> None:
    """`[iam] authorizer = "aegis"` finds this factory, and what it makes provides IAuthorizer."""
    assert plugins.find_authorizer_factory("aegis") is aegisAuthorizerFactory
    assert verifyObject(IAuthorizerFactory, aegisAuthorizerFactory)
    authz = aegisAuthorizerFactory.create(
        {"endpoint": "http://127.0.0.1:1"}, AuthorizerContext(reactor=reactor, store=None, clock=Clock().seconds)
    )
    assert verifyObject(IAuthorizer, authz)
    assert authz.url == "http://127.0.0.1:1/v1/authorize"


@pytest.mark.parametrize(
    "options, complaint",
    [
        ({}, "iam.endpoint"),
        ({"endpoint": "aegis:8080"}, "iam.endpoint"),
        ({"endpoint": "http://a", "timeout_seconds": 0}, "iam.timeout_seconds"),
        ({"endpoint": "http://a", "cache_seconds": -1}, "iam.cache_seconds"),
        ({"endpoint": "http://a", "token_path": "/nonexistent/token"}, "iam.token_path"),
    ],
)
def test_bad_options_are_config_errors(options: dict[str, Any], complaint: str) -> None:
    """Misconfiguration stops start-up with the key named, including a token
    file that cannot be read (rather than refusing every request later)."""
    with pytest.raises(ConfigError, match=complaint):
        aegisAuthorizerFactory.create(options, AuthorizerContext(reactor=reactor, store=None, clock=Clock().seconds))


def test_request_carries_principal_action_resource_and_token(tmp_path: Path) -> None:
    """One POST /v1/authorize with the documented JSON and the bearer token."""
    token_file = tmp_path / "token"
    write_token(token_file, "sa-token-1")
    clock = Clock()
    token = ServiceAccountToken(str(token_file), clock.seconds, sync_thread)
    token.load_now()
    aegis = Aegis(POLICY)
    assert ask(make(aegis, clock, token=token), aegis, ALICE, GET, OBJ) is True
    [req] = aegis.requests
    assert (req["method"], req["path"]) == ("POST", "/v1/authorize")
    assert req["authorization"] == "Bearer sa-token-1"
    assert req["content_type"] == "application/json"
    assert req["body"] == {
        "service_account": "lightningstor-test",
        "principal": {"id": "alice", "org_id": "acme", "project_id": "web", "roles": ["read-write"],
                      "access_key_id": "LSALICEKEY"},
        "action": GET,
        "resource": {"kind": "object", "id": "2026/a.txt", "org_id": "acme", "project_id": "web",
                     "bucket": "logs", "path": "org/acme/project/web/bucket/logs/object/2026/a.txt",
                     "owner": "alice"},
    }


def test_resource_ids_follow_spec_7_3() -> None:
    """id is the key for an object, the bucket name for a bucket, the scope's
    own id for a scope; an org-level resource has an empty project_id."""
    assert request_body(BOB, GET, BUCKET, None)["resource"] == {
        "kind": "bucket", "id": "shared", "org_id": "acme", "project_id": "", "bucket": "shared",
        "path": "org/acme/bucket/shared", "owner": "carol",
    }
    scope = request_body(BOB, "lightningstor:buckets:list", scope_resource("acme", "web"), None)["resource"]
    assert (scope["kind"], scope["id"], scope["path"]) == ("scope", "web", "org/acme/project/web")
    assert request_body(BOB, GET, scope_resource("acme", None), None)["resource"]["id"] == "acme"
    assert request_body(BOB, GET, BUCKET, None)["principal"]["project_id"] == ""


def test_allow_and_deny_follow_aegis() -> None:
    """aegis's answer is the decision, and the gate maps a deny to AccessDenied."""
    aegis, clock = Aegis(POLICY), Clock()
    authz = make(aegis, clock)
    assert ask(authz, aegis, ALICE, PUT, OBJ) is True
    assert ask(authz, aegis, ALICE, GET, BUCKET) is False  # no rule: denied
    assert ask(authz, aegis, BOB, GET, BUCKET) is False
    gate = AccessControl(buckets=None, authorizer=authz)
    denied = result_of(gate.check(BOB, GET, OBJ))
    assert isinstance(denied, Failure) and denied.check(errors.AccessDenied)


# ---------------------------------------------------------------------------
# Bearer tokens aegis issued (gRPC callers)
# ---------------------------------------------------------------------------

CAROL = {"id": "carol", "org_id": "acme", "project_id": "web", "roles": ["svc", "Reader Role"],
         "display_name": "Carol's batch job"}
TOKENS_POLICY: dict[str, Any] = {
    **POLICY,
    "tokens": {"tok-carol": {"principal": CAROL, "expires_at": 1000.0}, "tok-org": {"principal": {
        "id": "dave", "org_id": "acme"}}},
}


def vouch(authz: AegisAuthorizer, aegis: Aegis, token: str) -> Any:
    d = authz.authenticate_token(token)
    aegis.stub.flush()
    return result_of(d)


def test_authenticate_token_names_the_principal_aegis_gives() -> None:
    """aegis is sent the token with the service account; its principal
    becomes the caller (no access key: it signed nothing), and an unknown
    token is None (refused by the caller, not an outage)."""
    aegis, clock = Aegis(TOKENS_POLICY), Clock()
    authz = make(aegis, clock)
    assert verifyObject(ITokenAuthenticator, authz)
    assert vouch(authz, aegis, "tok-carol") == Principal(
        "carol", "acme", "web", None, "Carol's batch job", ("svc", "Reader Role")
    )
    assert vouch(authz, aegis, "tok-org") == Principal("dave", "acme", None, None, "", ())
    assert vouch(authz, aegis, "tok-unknown") is None
    assert [r["path"] for r in aegis.requests] == ["/v1/authenticate"] * 3
    assert aegis.requests[0]["body"] == {"service_account": "lightningstor-test", "token": "tok-carol"}


def test_authenticated_tokens_are_cached_never_past_their_expiry() -> None:
    """An answer about a token is reused for cache_seconds, but not beyond
    the expires_at aegis gave; once past it the token is refused without
    trusting the old answer.  Unknown tokens are cached too (a flood of bad
    tokens costs aegis one call each per cache_seconds)."""
    aegis, clock = Aegis(TOKENS_POLICY), Clock()
    clock.advance(997)
    authz = make(aegis, clock, cache_seconds=5)
    assert vouch(authz, aegis, "tok-carol") is not None
    assert vouch(authz, aegis, "tok-unknown") is None
    clock.advance(2)
    assert vouch(authz, aegis, "tok-carol") is not None
    assert vouch(authz, aegis, "tok-unknown") is None
    assert len(aegis.requests) == 2
    clock.advance(1.5)  # 1000.5: past carol's expiry, within cache_seconds
    assert vouch(authz, aegis, "tok-carol") is None
    assert len(aegis.requests) == 3
    assert "tok-carol" not in repr(authz.identities._entries)


@pytest.mark.parametrize(
    "answer",
    [
        {"authenticated": "true", "principal": CAROL},
        {"authenticated": True},
        {"authenticated": True, "principal": {"id": "carol"}},
        {"authenticated": True, "principal": {**CAROL, "org_id": "../other"}},
        {"authenticated": True, "principal": {**CAROL, "id": "carol\n"}},
        {"authenticated": True, "principal": {**CAROL, "project_id": 7}},
        {"authenticated": True, "principal": {**CAROL, "roles": "admin"}},
        {"authenticated": True, "principal": {**CAROL, "roles": ["a\u0000b"]}},
        {"authenticated": True, "principal": {**CAROL, "roles": ["r"] * 65}},
        {"authenticated": True, "principal": CAROL, "expires_at": "soon"},
        {"authenticated": True, "principal": CAROL, "expires_at": True},
    ],
    ids=["not-boolean", "no-principal", "no-org", "bad-org", "newline-id", "project-not-string",
         "roles-not-list", "control-in-role", "too-many-roles", "expiry-string", "expiry-bool"],
)
def test_unusable_identity_answers_fail_closed(answer: dict[str, Any]) -> None:
    """An answer this server cannot place in a tenant is an outage
    (AegisUnavailable), never a caller let in under a guess."""
    import json

    with pytest.raises(AegisUnavailable):
        parse_identity(200, json.dumps(answer).encode())


@pytest.mark.parametrize("mode", ["error", "malformed", "not-boolean", "stall"])
def test_authenticate_failures_are_not_cached(mode: str) -> None:
    """A 500, garbage, a non-boolean answer or no answer in time fail the
    Deferred; aegis is asked again once healthy."""
    aegis, clock = Aegis({**TOKENS_POLICY, "mode": mode}), Clock()
    authz = make(aegis, clock, timeout_seconds=2.0)
    d = authz.authenticate_token("tok-carol")
    aegis.stub.flush()
    clock.advance(2.1)
    failed = result_of(d)
    assert isinstance(failed, Failure) and failed.check(AegisUnavailable)
    aegis.policy = TOKENS_POLICY
    assert vouch(authz, aegis, "tok-carol") is not None
    assert len(aegis.requests) == 2


# ---------------------------------------------------------------------------
# Decision cache
# ---------------------------------------------------------------------------


def test_allow_and_deny_are_cached_until_cache_seconds_pass() -> None:
    """Within cache_seconds a repeated question is answered without a call,
    denies included; once they pass, aegis is asked again (and a changed
    policy takes effect)."""
    aegis, clock = Aegis(POLICY), Clock()
    authz = make(aegis, clock, cache_seconds=5)
    assert ask(authz, aegis, ALICE, GET, OBJ) is True
    assert ask(authz, aegis, BOB, GET, OBJ) is False
    aegis.policy = {"rules": [{"principal": "bob", "allow": True}]}
    clock.advance(4.9)
    assert ask(authz, aegis, ALICE, GET, OBJ) is True
    assert ask(authz, aegis, BOB, GET, OBJ) is False
    assert len(aegis.requests) == 2
    clock.advance(0.2)
    assert ask(authz, aegis, ALICE, GET, OBJ) is False
    assert ask(authz, aegis, BOB, GET, OBJ) is True
    assert len(aegis.requests) == 4


def test_cache_is_keyed_by_principal_action_and_resource() -> None:
    """A cached answer is never reused for another principal, action or path."""
    aegis, clock = Aegis(POLICY), Clock()
    authz = make(aegis, clock)
    assert ask(authz, aegis, ALICE, GET, OBJ) is True
    assert ask(authz, aegis, BOB, GET, OBJ) is False
    assert ask(authz, aegis, ALICE, "lightningstor:buckets:delete", OBJ) is False
    other = ResourceRef("object", "acme", "web", "logs", "2026/b.txt", "alice")
    assert ask(authz, aegis, ALICE, GET, other) is True
    assert len(aegis.requests) == 4


def test_cache_off_and_bounded() -> None:
    """cache_seconds = 0 asks every time; the cache never holds more than
    max_cache_entries (the oldest goes first)."""
    aegis, clock = Aegis(POLICY), Clock()
    uncached = make(aegis, clock, cache_seconds=0)
    for _ in range(3):
        assert ask(uncached, aegis, ALICE, GET, OBJ) is True
    assert len(aegis.requests) == 3
    small = make(aegis, clock, max_cache_entries=2)
    keys = [ResourceRef("object", "acme", "web", "logs", f"k{i}", "") for i in range(3)]
    for ref in keys:
        ask(small, aegis, ALICE, GET, ref)
    assert len(small.cache) == 2
    before = len(aegis.requests)
    ask(small, aegis, ALICE, GET, keys[2])
    assert len(aegis.requests) == before
    ask(small, aegis, ALICE, GET, keys[0])
    assert len(aegis.requests) == before + 1


def test_concurrent_identical_questions_share_one_call() -> None:
    """Questions asked while the same one is in flight wait for its answer
    instead of calling aegis again."""
    aegis, clock = Aegis({**POLICY, "mode": "stall"}), Clock()
    authz = make(aegis, clock)
    first = authz.authorize(ALICE, GET, OBJ)
    second = authz.authorize(ALICE, GET, OBJ)
    aegis.stub.flush()
    assert len(aegis.requests) == 1 and not first.called and not second.called
    [stalled] = aegis.resource.stalled
    stalled.write(b'{"allowed": true}')
    stalled.finish()
    aegis.stub.flush()
    assert result_of(first) is True and result_of(second) is True
    assert ask(authz, aegis, ALICE, GET, OBJ) is True
    assert len(aegis.requests) == 1


# ---------------------------------------------------------------------------
# Fails closed
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["error", "malformed", "not-boolean"])
def test_bad_answers_fail_and_are_not_cached(mode: str) -> None:
    """HTTP 500, a body that is not JSON and a non-boolean "allowed" all fail
    the decision (never allow); once aegis is healthy it is asked again."""
    aegis, clock = Aegis({**POLICY, "mode": mode}), Clock()
    authz = make(aegis, clock)
    for _ in range(2):
        failed = ask(authz, aegis, ALICE, GET, OBJ)
        assert isinstance(failed, Failure) and failed.check(AegisUnavailable)
    assert len(aegis.requests) == 2
    aegis.policy = POLICY
    assert ask(authz, aegis, ALICE, GET, OBJ) is True


def test_timeout_fails_closed_and_gate_answers_503() -> None:
    """No answer within timeout_seconds fails the decision; the core's gate
    turns it into ServiceUnavailable (503), not a permission either way."""
    aegis, clock = Aegis({**POLICY, "mode": "stall"}), Clock()
    authz = make(aegis, clock, timeout_seconds=2.0)
    gate = AccessControl(buckets=None, authorizer=authz)
    d = gate.check(ALICE, GET, OBJ)
    aegis.stub.flush()
    clock.advance(1.9)
    assert not d.called
    clock.advance(0.2)
    failed = result_of(d)
    assert isinstance(failed, Failure) and failed.check(errors.ServiceUnavailable)
    assert isinstance(failed.value.__cause__, AegisUnavailable)
    assert "2s" in str(failed.value.__cause__)
    assert len(authz.cache) == 0


def test_a_call_cancelled_at_its_deadline_is_not_repeated() -> None:
    """The deadline cancels the call, which fails like a lost pooled
    connection (ResponseNeverReceived); it must not be retried as one: the
    second call would have no deadline and, against a stalled aegis, stay
    open for good, one more per question asked during the stall."""
    aegis, clock = Aegis({**POLICY, "mode": "stall"}), Clock()
    authz = make(aegis, clock, timeout_seconds=2.0)
    d = authz.authorize(ALICE, GET, OBJ)
    aegis.stub.flush()
    clock.advance(2.1)
    aegis.stub.flush()
    failed = result_of(d)
    assert isinstance(failed, Failure) and failed.check(AegisUnavailable)
    assert len(aegis.requests) == 1


def test_wrong_token_fails_closed() -> None:
    """A 401 (aegis rejects our token) is a failure, never a decision."""
    aegis, clock = Aegis({**POLICY, "token": "the-right-one"}), Clock()
    failed = ask(make(aegis, clock), aegis, ALICE, GET, OBJ)
    assert isinstance(failed, Failure) and failed.check(AegisUnavailable)
    assert "401" in str(failed.value)


def test_oversized_answer_fails() -> None:
    """An answer far larger than any decision is refused, not parsed."""

    class Huge(Resource):
        isLeaf = True

        def render_POST(self, request: Any) -> bytes:
            return b'{"allowed": true, "reason": "' + b"x" * 100_000 + b'"}'

    stub, clock = StubTreq(Huge()), Clock()
    authz = AegisAuthorizer(stub, "http://aegis.test", reactor=clock, clock=clock.seconds)
    d = authz.authorize(ALICE, GET, OBJ)
    stub.flush()
    failed = result_of(d)
    assert isinstance(failed, Failure) and failed.check(AegisUnavailable)


# ---------------------------------------------------------------------------
# Service account token
# ---------------------------------------------------------------------------


def test_token_rotation_is_picked_up_after_the_check_interval(tmp_path: Path) -> None:
    """The token is served from memory; a rewritten file is read at the next
    check, not per request."""
    path = tmp_path / "token"
    write_token(path, "one")
    clock = Clock()
    reads: list[str] = []

    def counting_thread(f: Any, *args: Any) -> Deferred[Any]:
        reads.append(f.__name__)
        return maybeDeferred(f, *args)

    token = ServiceAccountToken(str(path), clock.seconds, counting_thread, check_seconds=10)
    token.load_now()
    assert result_of(token.current()) == "one"
    write_token(path, "two")
    clock.advance(9)
    assert result_of(token.current()) == "one"
    assert reads == []
    clock.advance(1)
    assert result_of(token.current()) == "two"
    assert result_of(token.current()) == "two"
    assert len(reads) == 1


def test_token_unreadable_keeps_last_or_fails_closed(tmp_path: Path) -> None:
    """A token file that disappears after start keeps the last token in use;
    with no token ever read, requests fail."""
    path = tmp_path / "token"
    write_token(path, "one")
    clock = Clock()
    token = ServiceAccountToken(str(path), clock.seconds, sync_thread, check_seconds=1)
    token.load_now()
    path.unlink()
    clock.advance(2)
    assert result_of(token.current()) == "one"
    never = ServiceAccountToken(str(path), clock.seconds, sync_thread)
    failed = result_of(never.current())
    assert isinstance(failed, Failure) and failed.check(AegisUnavailable)


def test_401_forces_a_token_reread_and_one_retry(tmp_path: Path) -> None:
    """When aegis rejects the token and the file holds a newer one (rotated
    between checks), the new token is read at once and the question asked
    again with it."""
    path = tmp_path / "token"
    write_token(path, "old")
    clock = Clock()
    token = ServiceAccountToken(str(path), clock.seconds, sync_thread, check_seconds=3600)
    token.load_now()
    aegis = Aegis({**POLICY, "token": "new"})
    authz = make(aegis, clock, token=token)
    write_token(path, "new")
    assert ask(authz, aegis, ALICE, GET, OBJ) is True
    assert [r["authorization"] for r in aegis.requests] == ["Bearer old", "Bearer new"]
    # Still rejected after a re-read that found nothing new: fail, no loop.
    aegis.policy = {**POLICY, "token": "newer"}
    failed = ask(authz, aegis, ALICE, PUT, OBJ)
    assert isinstance(failed, Failure) and failed.check(AegisUnavailable)
    assert len(aegis.requests) == 3


# ---------------------------------------------------------------------------
# The real HTTP client (factory-made: Agent + persistent pool) on loopback
# ---------------------------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_real_client_over_loopback(tmp_path: Path) -> Any:
    """The factory's Agent talks to a listening aegis with the token read at
    start-up, reuses its pooled connection, and close() releases it."""
    path = tmp_path / "token"
    write_token(path, "loopback-token")
    aegis = Aegis({**POLICY, "token": "loopback-token"})
    connections: list[Any] = []
    site = Site(aegis.resource)
    original = site.buildProtocol

    def counting(addr: Any) -> Any:
        connections.append(addr)
        return original(addr)

    site.buildProtocol = counting  # type: ignore[method-assign]
    port = reactor.listenTCP(0, site, interface="127.0.0.1")  # type: ignore[attr-defined]
    try:
        authz = aegisAuthorizerFactory.create(
            {"endpoint": f"http://127.0.0.1:{port.getHost().port}", "token_path": str(path),
             "service_account": "lightningstor", "cache_seconds": 0},
            AuthorizerContext(reactor=reactor, store=None, clock=Clock().seconds),
        )
        assert (yield authz.authorize(ALICE, GET, OBJ)) is True
        assert (yield authz.authorize(BOB, GET, OBJ)) is False
        assert (yield authz.authorize(ALICE, GET, OBJ)) is True
        assert len(aegis.requests) == 3 and len(connections) == 1
        assert {r["authorization"] for r in aegis.requests} == {"Bearer loopback-token"}
        assert aegis.requests[0]["body"]["service_account"] == "lightningstor"
        yield authz.close()
    finally:
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_real_client_connection_refused_fails_closed() -> Any:
    """Nobody listening: the decision fails (and quickly), it is never allowed."""
    placeholder = reactor.listenTCP(0, Site(Resource()), interface="127.0.0.1")  # type: ignore[attr-defined]
    free = placeholder.getHost().port
    yield placeholder.stopListening()
    authz = aegisAuthorizerFactory.create(
        {"endpoint": f"http://127.0.0.1:{free}", "timeout_seconds": 5},
        AuthorizerContext(reactor=reactor, store=None, clock=Clock().seconds),
    )
    with pytest.raises(AegisUnavailable, match="cannot reach aegis"):
        yield authz.authorize(ALICE, GET, OBJ)
    yield authz.close()

