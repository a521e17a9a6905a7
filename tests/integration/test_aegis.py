"""``[iam] authorizer = "aegis"`` end to end.

The real ``twistd lightningstor`` process asks the test aegis service
(``tests.aegis_service``, a real process on loopback) about every request
made with boto3 by two principals: the root ``admin`` and ``bob``, whose
principal and key are created with ``lightningstor-admin`` while the server
runs.  aegis's policy is rewritten between tests; ``cache_seconds = 0``
makes each change take effect at once.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from lightningstor.client import LightningStorClient, LightningStorError, make_token
from lightningstor.client import retry as retries
from tests.aegis_service import AegisProcess
from tests.integration.server import ROOT_ACCESS_KEY, ROOT_SECRET_KEY, ServerProcess

TOKEN = "sa-token-" + uuid.uuid4().hex
# Bearer tokens aegis issued to callers of the gRPC API (SPEC §4.3).
SERVICE_TOKEN = "eyJ.svc-billing." + uuid.uuid4().hex
EXPIRED_TOKEN = "eyJ.svc-expired." + uuid.uuid4().hex
BILLING = {"id": "billing", "org_id": "default", "project_id": "", "roles": ["svc"]}
BUCKET = "aegis-shared"
TIMEOUT_SECONDS = 1.0

ADMIN_ALL = {"principal": "admin", "action": "lightningstor:*", "resource": "*", "allow": True}
POLICY: dict[str, Any] = {
    "token": TOKEN,
    "rules": [
        ADMIN_ALL,
        {"principal": "bob", "action": "lightningstor:objects:get",
         "resource": f"org/default/bucket/{BUCKET}/object/secret*", "allow": False, "reason": "secret"},
        {"principal": "bob", "action": "lightningstor:objects:get",
         "resource": f"org/default/bucket/{BUCKET}/object/*", "allow": True},
        {"principal": "bob", "action": "lightningstor:buckets:get",
         "resource": f"org/default/bucket/{BUCKET}", "allow": True},
        {"principal": "billing", "action": "lightningstor:objects:get",
         "resource": f"org/default/bucket/{BUCKET}/object/public*", "allow": True},
    ],
    "tokens": {
        SERVICE_TOKEN: {"principal": BILLING},
        EXPIRED_TOKEN: {"principal": BILLING, "expires_at": 1_000_000_000},
    },
}


class Stack:
    """aegis + the server configured to ask it, and clients for both principals."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.token_path = tmp / "sa-token"
        self.token_path.write_text(TOKEN + "\n")
        self.data = tmp / "data"
        self.data.mkdir()
        self.config = tmp / "lightningstor.toml"
        self.aegis = AegisProcess(tmp, POLICY)
        self.server = ServerProcess(self.data, config=str(self.config))
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> None:
        self.aegis.start()
        self.config.write_text(textwrap.dedent(f"""
            [iam]
            authorizer = "aegis"
            endpoint = "{self.aegis.endpoint}"
            service_account = "lightningstor-it"
            token_path = "{self.token_path}"
            cache_seconds = 0
            timeout_seconds = {TIMEOUT_SECONDS}
        """))
        self.server.start()
        self.root = client(self.server.endpoint, ROOT_ACCESS_KEY, ROOT_SECRET_KEY)
        # bob is provisioned as an operator would, with the server running.
        self.admin("principal", "create", "bob", "--org", "default", "--role", "read-only")
        key = self.admin("key", "create", "bob")
        self.bob_key = key["access_key_id"]
        self.bob = client(self.server.endpoint, self.bob_key, key["secret_access_key"])

    def admin(self, *args: str) -> Any:
        """Run ``lightningstor-admin ... --json`` against the server's data."""
        script = str(Path(sys.executable).with_name("lightningstor-admin"))
        done = subprocess.run(
            [script, *args, "--config", str(self.config), "--data-dir", str(self.data), "--json"],
            capture_output=True, text=True, timeout=60,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return json.loads(done.stdout)

    def close(self) -> None:
        self.server.stop()
        self.aegis.stop()


def client(endpoint: str, key: str, secret: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                      retries={"max_attempts": 1, "mode": "standard"}),
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("aegis"))
    try:
        s.aegis.set_policy(POLICY)
        s.root.create_bucket(Bucket=BUCKET)
        s.root.put_object(Bucket=BUCKET, Key="public.txt", Body=b"for everyone")
        s.root.put_object(Bucket=BUCKET, Key="secret.txt", Body=b"for admins")
        yield s
    finally:
        s.close()


@pytest.fixture(autouse=True)
def default_policy(stack: Stack) -> Iterator[None]:
    """Each test starts (and leaves) aegis running with the standard policy."""
    if stack.aegis.proc is None:
        stack.aegis.start(port=stack.aegis.port or 0)
    stack.aegis.set_policy(POLICY)
    yield
    if stack.aegis.proc is None:
        stack.aegis.start(port=stack.aegis.port or 0)
    stack.aegis.set_policy(POLICY)


def code_of(exc: ClientError) -> tuple[int, str]:
    return exc.response["ResponseMetadata"]["HTTPStatusCode"], exc.response["Error"]["Code"]


def fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_allowed_action_succeeds_denied_one_is_access_denied(stack: Stack) -> None:
    """aegis decides: bob may read the shared bucket's public object, but
    not write to it, read the secret one or list buckets (403 AccessDenied)."""
    assert stack.bob.get_object(Bucket=BUCKET, Key="public.txt")["Body"].read() == b"for everyone"
    stack.bob.head_bucket(Bucket=BUCKET)
    for call in (
        lambda: stack.bob.put_object(Bucket=BUCKET, Key="bob.txt", Body=b"x"),
        lambda: stack.bob.get_object(Bucket=BUCKET, Key="secret.txt"),
        lambda: stack.bob.list_buckets(),
        lambda: stack.bob.delete_object(Bucket=BUCKET, Key="public.txt"),
    ):
        with pytest.raises(ClientError) as info:
            call()
        assert code_of(info.value) == (403, "AccessDenied")
    assert stack.root.get_object(Bucket=BUCKET, Key="public.txt")["Body"].read() == b"for everyone"
    with pytest.raises(ClientError):
        stack.root.head_object(Bucket=BUCKET, Key="bob.txt")


def test_policy_change_in_aegis_takes_effect(stack: Stack) -> None:
    """The decision is aegis's, not a local rule: granting bob puts in aegis
    lets the same request through."""
    with pytest.raises(ClientError) as info:
        stack.bob.put_object(Bucket=BUCKET, Key="granted.txt", Body=b"y")
    assert code_of(info.value) == (403, "AccessDenied")
    grant = {"principal": "bob", "action": "lightningstor:objects:put",
             "resource": f"org/default/bucket/{BUCKET}/object/granted.txt", "allow": True}
    stack.aegis.set_policy({**POLICY, "rules": [grant, *POLICY["rules"]]})
    stack.bob.put_object(Bucket=BUCKET, Key="granted.txt", Body=b"y")
    assert stack.root.get_object(Bucket=BUCKET, Key="granted.txt")["Body"].read() == b"y"


def test_presigned_url_carries_the_signers_permissions(stack: Stack) -> None:
    """A URL presigned by bob works where aegis allows bob and answers
    AccessDenied where it denies him, whoever uses it."""
    ok = stack.bob.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "public.txt"})
    assert fetch(ok) == (200, b"for everyone")
    denied = stack.bob.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "secret.txt"})
    status, body = fetch(denied)
    assert status == 403 and b"<Code>AccessDenied</Code>" in body
    by_root = stack.root.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "secret.txt"})
    assert fetch(by_root) == (200, b"for admins")


def test_aegis_received_the_token_and_the_questions(stack: Stack) -> None:
    """Every call carries the service account token read from token_path,
    and names the principal (with its roles), the SPEC §7.3 action and resource."""
    before = len(stack.aegis.requests())
    stack.bob.get_object(Bucket=BUCKET, Key="public.txt")
    new = stack.aegis.requests()[before:]
    assert new and all(r["authorization"] == f"Bearer {TOKEN}" for r in new)
    asked = [r["body"] for r in new]
    get = [b for b in asked if b["action"] == "lightningstor:objects:get"]
    assert get, asked
    assert get[0]["service_account"] == "lightningstor-it"
    assert get[0]["principal"] == {"id": "bob", "org_id": "default", "project_id": "", "roles": ["read-only"],
                                   "access_key_id": stack.bob_key}
    assert get[0]["resource"] == {
        "kind": "object", "id": "public.txt", "org_id": "default", "project_id": "", "bucket": BUCKET,
        "path": f"org/default/bucket/{BUCKET}/object/public.txt", "owner": "admin",
    }


def _refused_with_503(call: Any) -> float:
    start = time.monotonic()
    with pytest.raises(ClientError) as info:
        call()
    assert code_of(info.value) == (503, "ServiceUnavailable")
    return time.monotonic() - start


def test_aegis_down_fails_closed_then_recovers(stack: Stack) -> None:
    """aegis stopped: requests answer 503 (even root's) and nothing is
    written; aegis back on its port: the same requests work again."""
    stack.aegis.stop()
    _refused_with_503(lambda: stack.root.put_object(Bucket=BUCKET, Key="while-down.txt", Body=b"z"))
    _refused_with_503(lambda: stack.bob.get_object(Bucket=BUCKET, Key="public.txt"))
    assert any("cannot reach aegis" in line for line in stack.server.output)
    stack.aegis.start(port=stack.aegis.port or 0)
    with pytest.raises(ClientError) as info:
        stack.root.head_object(Bucket=BUCKET, Key="while-down.txt")
    assert code_of(info.value)[0] == 404
    stack.root.put_object(Bucket=BUCKET, Key="while-down.txt", Body=b"z")
    assert stack.bob.get_object(Bucket=BUCKET, Key="while-down.txt")["Body"].read() == b"z"


@pytest.mark.parametrize("mode", ["stall", "error", "malformed"])
def test_aegis_stalling_or_broken_fails_closed(stack: Stack, mode: str) -> None:
    """aegis answering too late (past timeout_seconds), with a 500 or with
    garbage: 503 and nothing written, never an allow."""
    key = f"broken-{mode}.txt"
    stack.aegis.set_policy({**POLICY, "mode": mode})
    took = _refused_with_503(lambda: stack.root.put_object(Bucket=BUCKET, Key=key, Body=b"w"))
    if mode == "stall":
        assert TIMEOUT_SECONDS * 0.9 <= took < TIMEOUT_SECONDS + 10
        assert any(f"no answer from aegis within {TIMEOUT_SECONDS:g}s" in line for line in stack.server.output)
    stack.aegis.set_policy(POLICY)
    with pytest.raises(ClientError) as info:
        stack.root.head_object(Bucket=BUCKET, Key=key)
    assert code_of(info.value)[0] == 404


def test_wrong_token_fails_closed(stack: Stack) -> None:
    """If aegis rejects the server's token (401), requests are refused with 503."""
    stack.aegis.set_policy({**POLICY, "token": "some-other-token"})
    _refused_with_503(lambda: stack.bob.get_object(Bucket=BUCKET, Key="public.txt"))


def test_token_rotation_is_followed(stack: Stack) -> None:
    """A rotated token file (swapped in, as Kubernetes does) is used as soon
    as aegis stops accepting the old token, and rotating back works too."""
    rotated = "sa-token-rotated-" + uuid.uuid4().hex
    tmp = stack.token_path.with_suffix(".new")
    try:
        tmp.write_text(rotated + "\n")
        tmp.replace(stack.token_path)
        stack.aegis.set_policy({**POLICY, "token": rotated})
        before = len(stack.aegis.requests())
        assert stack.bob.get_object(Bucket=BUCKET, Key="public.txt")["Body"].read() == b"for everyone"
        sent = [r["authorization"] for r in stack.aegis.requests()[before:]]
        assert sent[-1] == f"Bearer {rotated}"
    finally:
        tmp.write_text(TOKEN + "\n")
        tmp.replace(stack.token_path)
    stack.aegis.set_policy(POLICY)
    assert stack.bob.get_object(Bucket=BUCKET, Key="public.txt")["Body"].read() == b"for everyone"
    assert stack.aegis.requests()[-1]["authorization"] == f"Bearer {TOKEN}"


def grpc_client(stack: Stack, token: str) -> LightningStorClient:
    return LightningStorClient.connect(
        f"grpc://{stack.server.grpc_endpoint}", token=token, timeout=30, retry=retries.NO_RETRY
    )


def grpc_refusal(call: Any) -> tuple[str, str]:
    with pytest.raises(LightningStorError) as info:
        call()
    return info.value.status.name, info.value.code


def test_grpc_call_with_an_aegis_token_acts_as_its_principal(stack: Stack) -> None:
    """A bearer token aegis issued (not one of ours) is sent to aegis's
    /v1/authenticate once, with the service account token; the call then
    acts as the principal aegis named, and aegis decides what it may do."""
    before = len(stack.aegis.requests())
    with grpc_client(stack, SERVICE_TOKEN) as c:
        with c.get_object(BUCKET, "public.txt") as stream:
            assert b"".join(stream) == b"for everyone"
        assert grpc_refusal(lambda: c.get_object(BUCKET, "secret.txt")) == ("PERMISSION_DENIED", "AccessDenied")
        assert grpc_refusal(lambda: c.put_object(BUCKET, "billing.txt", b"b")) == ("PERMISSION_DENIED", "AccessDenied")
    new = stack.aegis.requests()[before:]
    assert all(r["authorization"] == f"Bearer {TOKEN}" for r in new)
    authn = [r["body"] for r in new if r["path"] == "/v1/authenticate"]
    assert authn and authn[0] == {"service_account": "lightningstor-it", "token": SERVICE_TOKEN}
    asked = [r["body"] for r in new if r["path"] == "/v1/authorize"]
    assert {b["principal"]["id"] for b in asked} == {"billing"}
    assert asked[0]["principal"] == {**BILLING, "access_key_id": ""}
    with pytest.raises(ClientError) as info:
        stack.root.head_object(Bucket=BUCKET, Key="billing.txt")
    assert code_of(info.value)[0] == 404
    # The access log names the caller, who has no access key (it showed "-", as for a refusal).
    assert any('principal:billing "POST /lightningstor.v1.ObjectService/GetObject" OK' in line
               for line in stack.server.output), stack.server.output[-5:]
    assert not any(SERVICE_TOKEN in line for line in stack.server.output)


@pytest.mark.parametrize("token", ["not-a-token-aegis-knows", EXPIRED_TOKEN], ids=["unknown", "expired"])
def test_grpc_token_aegis_does_not_accept_is_unauthenticated(stack: Stack, token: str) -> None:
    """A token aegis does not know, or one past the expiry aegis gave, is
    UNAUTHENTICATED (InvalidToken) and reaches no bucket."""
    with grpc_client(stack, token) as c:
        assert grpc_refusal(lambda: c.get_object(BUCKET, "public.txt")) == ("UNAUTHENTICATED", "InvalidToken")
        assert grpc_refusal(lambda: c.list_buckets()) == ("UNAUTHENTICATED", "InvalidToken")


def test_grpc_token_of_our_own_is_not_sent_to_aegis(stack: Stack) -> None:
    """A token minted from bob's S3 key is verified here, as without aegis:
    aegis is asked what bob may do, never whom the token names, and a
    forged one of ours is refused without asking aegis either."""
    secret = stack.admin("key", "create", "bob")
    own = make_token(secret["access_key_id"], secret["secret_access_key"], lifetime=600)
    before = len(stack.aegis.requests())
    with grpc_client(stack, own) as c:
        with c.get_object(BUCKET, "public.txt") as stream:
            assert b"".join(stream) == b"for everyone"
    with grpc_client(stack, own[:-2] + ("AA" if not own.endswith("AA") else "BB")) as c:
        assert grpc_refusal(lambda: c.get_object(BUCKET, "public.txt"))[0] == "UNAUTHENTICATED"
    paths = [r["path"] for r in stack.aegis.requests()[before:]]
    assert paths and "/v1/authenticate" not in paths


@pytest.mark.parametrize("mode", ["down", "stall", "not-boolean"])
def test_grpc_aegis_token_without_an_answer_is_unavailable(stack: Stack, mode: str) -> None:
    """aegis stopped, stalling or answering garbage about a token: the call
    is UNAVAILABLE (retryable), never let in, and nothing is written."""
    grant = {"principal": "billing", "action": "lightningstor:objects:put", "resource": "*", "allow": True}
    key = f"authn-{mode}.txt"
    if mode == "down":
        stack.aegis.stop()
    else:
        stack.aegis.set_policy({**POLICY, "mode": mode, "rules": [grant, *POLICY["rules"]]})
    with grpc_client(stack, SERVICE_TOKEN) as c:
        assert grpc_refusal(lambda: c.put_object(BUCKET, key, b"w")) == ("UNAVAILABLE", "ServiceUnavailable")
    if mode == "down":
        stack.aegis.start(port=stack.aegis.port or 0)
    stack.aegis.set_policy(POLICY)
    with pytest.raises(ClientError) as info:
        stack.root.head_object(Bucket=BUCKET, Key=key)
    assert code_of(info.value)[0] == 404
