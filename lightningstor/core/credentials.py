"""S3 credentials (SPEC §4.3): access keys mapped to principals.

Secrets are stored encrypted at rest (Fernet: AES-128-CBC + HMAC-SHA256 from
``cryptography``) with a master key that lives outside the metadata store, so
a copy of the database alone does not reveal any secret.  SigV4 needs the
plain secret to recompute signatures, hence encryption rather than hashing.
"""

from __future__ import annotations

import json
import os
import secrets
import string
import time
from dataclasses import dataclass, replace
from typing import Any, Callable

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from twisted.internet.defer import Deferred, inlineCallbacks, succeed

from lightningstor.core import keys
from lightningstor.core.principals import PrincipalRecord
from lightningstor.core.types import Principal
from lightningstor.errors import ConfigError
from lightningstor.interfaces.metadata import (
    Compare,
    Delete,
    IMetadataStore,
    KeyValue,
    Operation,
    Put,
    prefix_end,
)

_ACCESS_ALPHABET = string.ascii_uppercase + string.digits
_SECRET_ALPHABET = string.ascii_letters + string.digits + "+/"
_CHECK_TEXT = b"lightningstor master key check v1"

DEFAULT_ORG = "default"
ROOT_PRINCIPAL = "admin"


def load_or_create_master_key(path: str) -> bytes:
    """Read the master key file, creating it (one key, mode 0600) on first start.

    The file holds one Fernet key per line.  The first encrypts; every line
    decrypts.  That is how the key is rotated without downtime: put a new
    key on the first line (keeping the old one below it), restart the
    servers, re-encrypt the stored secrets (``lightningstor-admin key
    reencrypt``) and re-wrap the SSE-S3 data keys (``lightningstor-admin sse
    rewrap``), then drop the old line.  Raises ValueError for a damaged
    file.
    """
    found = read_master_key_file(path)
    if found is None:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        key = Fernet.generate_key()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key + b"\n")
            f.flush()
            os.fsync(f.fileno())
        return key
    return found


def read_master_key_file(path: str) -> bytes | None:
    """The master key file's content, every line validated (ValueError for a
    damaged one; OSError for a file that cannot be read), or None when there
    is no such file: each caller says what a missing file means."""
    try:
        with open(path, "rb") as f:
            content = f.read()
    except FileNotFoundError:
        return None
    master_keys(content)
    return content.strip()


@inlineCallbacks
def holds_secrets(store: IMetadataStore) -> Any:
    """Deferred[bool]: whether ``store`` holds anything encrypted under a
    master key (its key check, or a credential), so that a missing key file
    is lost rather than not made yet."""
    check = yield store.get(keys.MASTER_KEY_CHECK)
    if check is not None:
        return True
    rows = yield store.scan(keys.CREDENTIALS, prefix_end(keys.CREDENTIALS), 1)
    return bool(rows)


def open_master_key(path: str, *, create: bool) -> bytes:
    """The master key, read (and with ``create``, made on first start) for a
    server's start-up: a file that is not one (a directory, an unreadable
    or damaged file) is a ConfigError naming ``security.master_key_file``,
    one line for the operator, where it was a traceback."""
    try:
        return load_or_create_master_key(path) if create else load_master_key(path)
    except OSError as e:
        raise ConfigError(f"security.master_key_file: {path}: {e.strerror or e}") from None
    except ValueError as e:
        raise ConfigError(f"security.master_key_file: {path}: not a master key file ({e})") from None


def load_master_key(path: str) -> bytes:
    """Read the master key file, never creating it: a worker process's view,
    since its supervisor created the file before starting it.  A file gone
    since then is an operator's mistake to report (``ConfigError``), not a
    reason to make a key no stored secret opens."""
    found = read_master_key_file(path)
    if found is None:
        raise ConfigError(
            f"security.master_key_file: {path} is gone (it was there when the server started): restore it"
        )
    return found


def master_keys(content: bytes) -> list[bytes]:
    """The keys of a master key file, first (encrypting) one first; ValueError
    if there is none or a line is not a Fernet key."""
    found = [line.strip() for line in content.splitlines() if line.strip() and not line.startswith(b"#")]
    if not found:
        raise ValueError("the master key file holds no key")
    for key in found:
        Fernet(key)  # raises ValueError for a malformed key
    return found


def new_access_key() -> str:
    return "LS" + "".join(secrets.choice(_ACCESS_ALPHABET) for _ in range(18))


def new_secret_key() -> str:
    return "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(40))


@dataclass(frozen=True)
class Credential:
    access_key_id: str
    principal: Principal
    secret: str
    created_at: int
    expires_at: int | None = None  # Unix ms
    disabled: bool = False

    def usable(self, now_ms: int) -> bool:
        return not self.disabled and (self.expires_at is None or now_ms < self.expires_at)


class MasterKeyMismatch(RuntimeError):
    """The master key file does not open what this metadata store holds: it
    is not the key the stored secrets and SSE-S3 data keys were written under."""


class CredentialStore:
    """Creates and looks up credentials; lookups are cached briefly.

    The cache keeps SigV4 verification off the metadata store's hot path; its
    short TTL bounds how long a disabled key keeps working on this server.
    """

    def __init__(
        self,
        store: IMetadataStore,
        master_key: bytes,
        *,
        clock: Callable[[], float] = time.time,
        cache_ttl: float = 5.0,
    ) -> None:
        self._store = store
        # Encrypts with the file's first key, decrypts with any of them.
        fernets = [Fernet(k) for k in master_keys(master_key)]
        self._first = fernets[0]
        self._fernet = MultiFernet(fernets)
        self._clock = clock
        self._ttl = cache_ttl
        self._cache: dict[str, tuple[float, Credential | None]] = {}

    def _encode(self, cred: Credential) -> bytes:
        d: dict[str, Any] = {
            "v": 1,
            "ak": cred.access_key_id,
            "principal": cred.principal.principal_id,
            "org": cred.principal.org_id,
            "project": cred.principal.project_id,
            "name": cred.principal.display_name,
            "secret": self._fernet.encrypt(cred.secret.encode()).decode("ascii"),
            "created": cred.created_at,
            "expires": cred.expires_at,
            "disabled": cred.disabled,
        }
        return json.dumps(d, separators=(",", ":")).encode()

    def _decode(self, data: bytes) -> Credential:
        d = json.loads(data)
        try:
            secret = self._fernet.decrypt(d["secret"].encode()).decode()
        except InvalidToken as e:
            raise RuntimeError(
                f"credential {d['ak']}: secret cannot be decrypted with this master key"
            ) from e
        principal = Principal(
            principal_id=d["principal"],
            org_id=d["org"],
            project_id=d.get("project"),
            access_key_id=d["ak"],
            display_name=d.get("name", ""),
        )
        return Credential(
            access_key_id=d["ak"],
            principal=principal,
            secret=secret,
            created_at=d["created"],
            expires_at=d.get("expires"),
            disabled=d.get("disabled", False),
        )

    @inlineCallbacks
    def create(
        self,
        principal: Principal,
        access_key_id: str | None = None,
        secret: str | None = None,
        expires_at: int | None = None,
    ) -> Any:
        """Store a new credential; Deferred[Credential].  Fails if the key exists."""
        cred = Credential(
            access_key_id=access_key_id or new_access_key(),
            principal=principal,
            secret=secret or new_secret_key(),
            created_at=int(self._clock() * 1000),
            expires_at=expires_at,
        )
        result = yield self._store.txn(
            [Compare(keys.credential_key(cred.access_key_id), 0)],
            [
                Put(keys.credential_key(cred.access_key_id), self._encode(cred)),
                Put(
                    keys.credential_by_principal_key(principal.principal_id, cred.access_key_id),
                    b"",
                ),
            ],
        )
        if not result.succeeded:
            raise ValueError(f"access key {cred.access_key_id} already exists")
        self._cache.pop(cred.access_key_id, None)
        return cred

    @inlineCallbacks
    def ensure(self, principal: Principal, access_key_id: str, secret: str) -> Any:
        """Make ``access_key_id`` exist with exactly ``secret`` (root key from the
        environment); Deferred[bool] True if it was created or changed."""
        kv = yield self._store.get(keys.credential_key(access_key_id))
        if kv is not None:
            current = self._decode(kv.value)
            if current.secret == secret and current.principal == principal and current.usable(
                int(self._clock() * 1000)
            ):
                return False
        cred = Credential(
            access_key_id=access_key_id,
            principal=principal,
            secret=secret,
            created_at=int(self._clock() * 1000),
        )
        yield self._store.txn(
            [],
            [
                Put(keys.credential_key(access_key_id), self._encode(cred)),
                Put(keys.credential_by_principal_key(principal.principal_id, access_key_id), b""),
            ],
        )
        self._cache.pop(access_key_id, None)
        return True

    def lookup(self, access_key_id: str) -> Deferred[Credential | None]:
        """The usable credential for a key, or None (unknown, disabled, expired)."""
        now = self._clock()
        hit = self._cache.get(access_key_id)
        if hit is not None and hit[0] > now:
            return succeed(_usable(hit[1], now))
        d: Deferred[Any] = self._load(access_key_id)

        def found(cred: Credential | None) -> Credential | None:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[access_key_id] = (now + self._ttl, cred)
            return cred

        d.addCallback(found)
        d.addCallback(_usable, now)
        return d

    @inlineCallbacks
    def _load(self, access_key_id: str) -> Any:
        """Deferred[Credential | None] joined with its principal's record:
        the record's roles and scope apply, and a disabled principal
        disables every key it owns."""
        kv = yield self._store.get(keys.credential_key(access_key_id))
        if kv is None:
            return None
        cred = self._decode(kv.value)
        pkv = yield self._store.get(keys.principal_key(cred.principal.principal_id))
        if pkv is None:
            return cred
        record = PrincipalRecord.decode(pkv.value)
        principal = replace(
            cred.principal,
            org_id=record.org_id,
            project_id=record.project_id,
            display_name=record.display_name or cred.principal.display_name,
            roles=record.roles,
        )
        return replace(cred, principal=principal, disabled=cred.disabled or record.disabled)

    @inlineCallbacks
    def get(self, access_key_id: str) -> Any:
        """Deferred[Credential | None] as stored (usable or not, uncached)."""
        kv = yield self._store.get(keys.credential_key(access_key_id))
        return None if kv is None else self._decode(kv.value)

    @inlineCallbacks
    def list_keys(self, principal_id: str) -> Any:
        """Deferred[list[Credential]]: every access key of a principal."""
        prefix = keys.credential_by_principal_key(principal_id, "")
        rows = yield self._store.scan(prefix, prefix_end(prefix))
        out = []
        for row in rows:
            cred = yield self.get(row.key[len(prefix):].decode())
            if cred is not None:
                out.append(cred)
        return out

    @inlineCallbacks
    def set_disabled(self, access_key_id: str, disabled: bool = True) -> Any:
        """Deferred[Credential]: disable (or re-enable) one access key; KeyError if unknown.

        Takes effect on every server within the lookup cache's TTL."""
        key = keys.credential_key(access_key_id)
        for _attempt in range(50):
            kv = yield self._store.get(key)
            if kv is None:
                raise KeyError(access_key_id)
            cred = replace(self._decode(kv.value), disabled=disabled)
            result = yield self._store.txn([Compare(key, kv.mod_revision)], [Put(key, self._encode(cred))])
            if result.succeeded:
                self._cache.pop(access_key_id, None)
                return cred
        raise RuntimeError(f"access key {access_key_id} keeps changing; try again")

    @inlineCallbacks
    def reencrypt_all(self) -> Any:
        """Deferred[int]: re-encrypt every stored secret with the first master
        key (the last step before an old key can leave the key file).

        Each credential is rewritten with a compare on its revision, retried
        if it changed meanwhile; a secret no key decrypts fails the run
        (RuntimeError naming it) before anything after it is touched.  A
        key file that does not open the key check (:meth:`check_master_key`)
        fails it before anything is touched; the check itself is rewritten
        last.
        """
        yield self.check_master_key()
        rewritten = yield self._change_each(lambda kv: [Put(kv.key, self._encode(self._decode(kv.value)))])
        yield self._reencrypt_check()
        return rewritten

    @inlineCallbacks
    def _change_each(self, change: Callable[[KeyValue], list[Operation] | None]) -> Any:
        """Deferred[int]: every stored credential, page by page, through
        ``change``: the operations that replace it (applied with a compare
        on the revision read, and on a lost compare asked again of what is
        there now), or None to keep it.  How many were changed.  What
        ``change`` raises fails the walk before anything after it."""
        changed = 0
        start, end = keys.CREDENTIALS, prefix_end(keys.CREDENTIALS)
        while True:
            rows = yield self._store.scan(start, end, 500)
            for row in rows:
                kv = row
                for _attempt in range(50):
                    operations = change(kv)
                    if operations is None:
                        break
                    result = yield self._store.txn([Compare(kv.key, kv.mod_revision)], operations)
                    if result.succeeded:
                        changed += 1
                        break
                    kv = yield self._store.get(row.key)
                    if kv is None:
                        break
                else:
                    access_key_id = row.key[len(keys.CREDENTIALS):].decode()
                    raise RuntimeError(f"credential {access_key_id} keeps changing; run again")
            if len(rows) < 500:
                return changed
            start = rows[-1].key + b"\0"

    @inlineCallbacks
    def check_master_key(self) -> Any:
        """Deferred[None]; fails with :class:`MasterKeyMismatch` when the
        master key file does not open this store's key check.

        Without it a lost or replaced key file went unnoticed at start: the
        server answered every signed request with an internal error, and
        wrapped new SSE-S3 objects under a key nothing else holds, so putting
        the right file back later would have lost those objects.  The check
        is a fixed text encrypted under the first line
        (:data:`~lightningstor.core.keys.MASTER_KEY_CHECK`), written by the
        first start that finds none.  A store from before the check gets one
        only if its first stored credential opens with the key.
        """
        for _attempt in range(10):
            kv = yield self._store.get(keys.MASTER_KEY_CHECK)
            if kv is not None:
                try:
                    if self._fernet.decrypt(kv.value) == _CHECK_TEXT:
                        return None
                except InvalidToken:
                    pass
                raise MasterKeyMismatch("its key check does not decrypt")
            rows = yield self._store.scan(keys.CREDENTIALS, prefix_end(keys.CREDENTIALS), 1)
            if rows:
                try:
                    self._decode(rows[0].value)
                except RuntimeError as e:
                    raise MasterKeyMismatch(str(e)) from None
            result = yield self._store.txn(
                [Compare(keys.MASTER_KEY_CHECK, 0)], [Put(keys.MASTER_KEY_CHECK, self._first.encrypt(_CHECK_TEXT))]
            )
            if result.succeeded:
                return None
        raise RuntimeError("the master key check keeps changing; try again")

    @inlineCallbacks
    def _reencrypt_check(self) -> Any:
        """Deferred[None]: the key check (which exists) encrypted again with
        the first key, so that it opens once the old lines leave the file."""
        for _attempt in range(50):
            kv = yield self._store.get(keys.MASTER_KEY_CHECK)
            token = self._fernet.rotate(kv.value)
            result = yield self._store.txn(
                [Compare(keys.MASTER_KEY_CHECK, kv.mod_revision)], [Put(keys.MASTER_KEY_CHECK, token)]
            )
            if result.succeeded:
                return None
        raise RuntimeError("the master key check keeps changing; run again")

    @inlineCallbacks
    def adopt_master_key(self) -> Any:
        """Deferred[int]: make the master key file this store's key after the
        one that wrote it was lost, forgetting every credential whose secret
        it does not open (their number).  The key check is written again
        under the file's first line, so the servers start.  What else only
        the lost key opened stays unreadable: SSE-S3 objects' data keys.
        The disaster-recovery step of docs/operations.md, never a rotation
        (a rotation keeps the old line and runs ``key reencrypt``)."""

        def forget_unopened(kv: KeyValue) -> list[Operation] | None:
            try:
                self._decode(kv.value)
                return None  # opens with this file: kept
            except RuntimeError:
                pass
            d = json.loads(kv.value)
            self._cache.pop(d["ak"], None)
            return [Delete(kv.key), Delete(keys.credential_by_principal_key(d["principal"], d["ak"]))]

        forgotten = yield self._change_each(forget_unopened)
        yield self._store.txn([], [Put(keys.MASTER_KEY_CHECK, self._first.encrypt(_CHECK_TEXT))])
        return forgotten

    def decrypts_with_first_key(self, value: bytes) -> bool:
        """Whether a stored credential's secret is encrypted with the first key
        (tests and ``key reencrypt`` reporting)."""
        token = json.loads(value)["secret"].encode()
        try:
            self._first.decrypt(token)
        except InvalidToken:
            return False
        return True

    @inlineCallbacks
    def any_exist(self) -> Any:
        """Deferred[bool]: whether any credential is stored (first-start detection)."""
        rows = yield self._store.scan(keys.CREDENTIALS, prefix_end(keys.CREDENTIALS), 1)
        return bool(rows)


def _usable(cred: Credential | None, now: float) -> Credential | None:
    if cred is None or not cred.usable(int(now * 1000)):
        return None
    return cred
