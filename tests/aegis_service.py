"""A small aegis-compatible IAM service for tests (wire protocol: docs/aegis.md).

Run as a real process::

    python -m tests.aegis_service --port 0 --policy policy.json --record requests.jsonl

It prints ``AEGIS_PORT <port>`` on stdout once listening on 127.0.0.1, and
answers ``POST /v1/authorize`` and ``POST /v1/authenticate`` from the JSON
policy file, re-read whenever it changes, so a test steers it by rewriting
that file::

    {
      "mode": "decide",            # or "stall" (never answer), "error" (HTTP 500),
                                   # "malformed" (200 with a body that is not JSON),
                                   # "not-boolean" (200 with "allowed": "true")
      "token": "expected-token",   # optional: any other bearer token gets 401
      "rules": [                   # first match wins; no match denies
        {"principal": "admin", "action": "lightningstor:*", "resource": "*", "allow": true},
        {"principal": "bob", "action": "lightningstor:objects:get",
         "resource": "org/default/bucket/public/*", "allow": true, "reason": "public"}
      ],
      "tokens": {                  # bearer tokens /v1/authenticate accepts; others are refused
        "svc-token-1": {"principal": {"id": "billing", "org_id": "acme", "project_id": "web",
                                      "roles": ["svc"]},
                        "expires_at": 1900000000}       # optional
      }
    }

Patterns are shell globs (``fnmatchcase``) over the principal id, the action
and the resource path; a missing pattern matches anything.  Every request
is appended to the ``--record`` file as one JSON line (method, path, the
Authorization header, the parsed body), so tests can assert what
LightningStor sent.  :class:`AegisResource` is the same service for
in-process use (``treq.testing.StubTreq``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

Policy = dict[str, Any]


def decide(policy: Policy, body: dict[str, Any]) -> tuple[bool, str]:
    """(allowed, reason) for one question under ``policy``'s rules."""
    principal = str(body.get("principal", {}).get("id", ""))
    action = str(body.get("action", ""))
    path = str(body.get("resource", {}).get("path", ""))
    for i, rule in enumerate(policy.get("rules", [])):
        if (
            fnmatchcase(principal, rule.get("principal", "*"))
            and fnmatchcase(action, rule.get("action", "*"))
            and fnmatchcase(path, rule.get("resource", "*"))
        ):
            allowed = bool(rule.get("allow", False))
            return allowed, rule.get("reason", f"rule {i} {'allows' if allowed else 'denies'}")
    return False, "no rule matched"


def identify(policy: Policy, body: dict[str, Any]) -> dict[str, Any]:
    """The /v1/authenticate answer for ``body``'s token under ``policy``."""
    known = policy.get("tokens", {}).get(str(body.get("token", "")))
    if known is None:
        return {"authenticated": False, "reason": "unknown token"}
    return {"authenticated": True, **known}


class AegisResource(Resource):
    """``/v1/authorize`` answering from ``policy()``, recording each request
    with ``record(dict)``."""

    isLeaf = True

    def __init__(self, policy: Callable[[], Policy], record: Callable[[dict[str, Any]], None]) -> None:
        super().__init__()
        self._policy = policy
        self._record = record
        self.stalled: list[Request] = []

    def render(self, request: Request) -> bytes | int:
        raw = request.content.read() if request.content is not None else b""
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw.decode("utf-8", "replace")
        auth = request.getHeader("authorization")
        self._record({
            "method": request.method.decode(),
            "path": request.path.decode(),
            "authorization": auth,
            "content_type": request.getHeader("content-type"),
            "body": body,
        })
        policy = self._policy()
        mode = policy.get("mode", "decide")
        request.setHeader(b"content-type", b"application/json")
        if mode == "stall":
            # Never answered: the connection stays open until the client gives up.
            self.stalled.append(request)
            return NOT_DONE_YET
        if request.method != b"POST" or request.path not in (b"/v1/authorize", b"/v1/authenticate"):
            request.setResponseCode(404)
            return b'{"error": "not found"}'
        expected = policy.get("token")
        if expected is not None and auth != f"Bearer {expected}":
            request.setResponseCode(401)
            return b'{"error": "invalid token"}'
        if mode == "error":
            request.setResponseCode(500)
            return b'{"error": "internal"}'
        if mode == "malformed":
            return b'{"allowed": tr'
        if mode == "not-boolean":
            return b'{"allowed": "true", "authenticated": "true"}'
        if not isinstance(body, dict):
            request.setResponseCode(400)
            return b'{"error": "body is not a JSON object"}'
        if request.path == b"/v1/authenticate":
            return json.dumps(identify(policy, body)).encode()
        allowed, reason = decide(policy, body)
        return json.dumps({"allowed": allowed, "reason": reason}).encode()


class PolicyFile:
    """The policy, re-read when the file's stat changes (tests rewrite it)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self._policy: Policy = {}

    def __call__(self) -> Policy:
        st = os.stat(self.path)
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            with open(self.path, encoding="utf-8") as f:
                self._policy = json.load(f)
            self._stamp = stamp
        return self._policy


class Recorder:
    """Appends each request as a JSON line (flushed: tests read it live)."""

    def __init__(self, path: str | None) -> None:
        self.path = path

    def __call__(self, record: dict[str, Any]) -> None:
        if self.path is None:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


class AegisProcess:
    """The service as a child process of a test, on a loopback port.

    ``set_policy`` rewrites the policy file atomically (a new inode, so the
    service sees the change even within one mtime tick); ``requests()`` is
    what it has received so far.  ``stop()`` ends only this process (by its
    pid); ``start(port=...)`` can bring it back on the same port.
    """

    def __init__(self, workdir: Path, policy: Policy) -> None:
        self.workdir = workdir
        self.policy_path = workdir / "aegis-policy.json"
        self.record_path = workdir / "aegis-requests.jsonl"
        self.set_policy(policy)
        self.proc: subprocess.Popen[str] | None = None
        self.port: int | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set_policy(self, policy: Policy) -> None:
        tmp = self.policy_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(policy), encoding="utf-8")
        os.replace(tmp, self.policy_path)

    def requests(self) -> list[dict[str, Any]]:
        if not self.record_path.exists():
            return []
        lines = self.record_path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def start(self, port: int = 0, timeout: float = 20.0) -> AegisProcess:
        root = Path(__file__).resolve().parent.parent
        # stderr goes to a file, not the pipe, so nothing the service writes
        # can fill an undrained pipe and stall it.
        self._log = open(self.workdir / "aegis-service.log", "a", encoding="utf-8")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.aegis_service", "--port", str(port),
             "--policy", str(self.policy_path), "--record", str(self.record_path)],
            stdout=subprocess.PIPE, stderr=self._log, text=True, cwd=str(root),
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        stdout = self.proc.stdout
        assert stdout is not None
        first: list[str] = []
        reader = threading.Thread(target=lambda: first.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        line = first[0] if first else ""
        if not line.startswith("AEGIS_PORT "):
            self.stop()
            raise RuntimeError(f"aegis test service did not start within {timeout}s: {line!r}")
        self.port = int(line.split()[1])
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()
        self.proc = None


def main(argv: list[str] | None = None) -> None:
    from twisted.internet import reactor

    parser = argparse.ArgumentParser(prog="python -m tests.aegis_service")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--policy", required=True, help="JSON policy file, re-read when it changes")
    parser.add_argument("--record", default=None, help="append each request here as a JSON line")
    args = parser.parse_args(argv)
    site = Site(AegisResource(PolicyFile(args.policy), Recorder(args.record)))
    site.noisy = False
    port = reactor.listenTCP(args.port, site, interface="127.0.0.1")  # type: ignore[attr-defined]
    print(f"AEGIS_PORT {port.getHost().port}", flush=True)
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main(sys.argv[1:])
