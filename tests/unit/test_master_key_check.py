"""The master key check (core/credentials.py): a key file that did not write
this store's data is refused before anything is written under it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_twisted
from cryptography.fernet import Fernet
from twisted.internet import reactor

from lightningstor.core import keys
from lightningstor.core.credentials import CredentialStore, MasterKeyMismatch, load_master_key
from lightningstor.core.types import Principal
from lightningstor.errors import ConfigError
from lightningstor.metadata.sqlite import SqliteMetadataStore

OLD = Fernet.generate_key()
NEW = Fernet.generate_key()
ALICE = Principal(principal_id="alice", org_id="acme", display_name="Alice")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteMetadataStore]:
    s = SqliteMetadataStore(str(tmp_path / "metadata.db"), reactor)
    yield s
    pytest_twisted.blockon(s.close())


def creds(store: SqliteMetadataStore, *lines: bytes) -> CredentialStore:
    return CredentialStore(store, b"\n".join(lines), cache_ttl=0)


async def refused(store: SqliteMetadataStore, *lines: bytes) -> str:
    with pytest.raises(MasterKeyMismatch) as caught:
        await creds(store, *lines).check_master_key()
    return str(caught.value)


@pytest_twisted.ensureDeferred
async def test_the_first_check_records_the_key_and_later_ones_hold_to_it(store: SqliteMetadataStore) -> None:
    assert await store.get(keys.MASTER_KEY_CHECK) is None
    await creds(store, OLD).check_master_key()
    recorded = await store.get(keys.MASTER_KEY_CHECK)
    assert recorded is not None
    await creds(store, OLD).check_master_key()
    await creds(store, NEW, OLD).check_master_key()  # a rotation in progress
    assert "key check" in await refused(store, NEW)
    after = await store.get(keys.MASTER_KEY_CHECK)
    assert after is not None and after.mod_revision == recorded.mod_revision


@pytest_twisted.ensureDeferred
async def test_a_store_from_before_the_check_is_checked_against_a_credential(store: SqliteMetadataStore) -> None:
    """Stored credentials but no check: another key is refused and records
    nothing; the key that opens the credential gets the check written."""
    await creds(store, OLD).create(ALICE)  # writes no check, as before the check existed
    assert "cannot be decrypted" in await refused(store, NEW)
    assert await store.get(keys.MASTER_KEY_CHECK) is None
    await creds(store, OLD).check_master_key()
    assert await store.get(keys.MASTER_KEY_CHECK) is not None
    assert "key check" in await refused(store, NEW)


@pytest_twisted.ensureDeferred
async def test_reencrypt_moves_the_check_to_the_first_key(store: SqliteMetadataStore) -> None:
    cred = await creds(store, OLD).create(ALICE)
    await creds(store, OLD).check_master_key()
    assert await refused(store, NEW)  # the old line is still needed
    assert await creds(store, NEW, OLD).reencrypt_all() == 1
    await creds(store, NEW).check_master_key()
    assert (await creds(store, NEW).get(cred.access_key_id)).secret == cred.secret


@pytest_twisted.ensureDeferred
async def test_reencrypt_with_a_foreign_key_touches_nothing(store: SqliteMetadataStore) -> None:
    cred = await creds(store, OLD).create(ALICE)
    await creds(store, OLD).check_master_key()
    stored = await store.get(keys.credential_key(cred.access_key_id))
    with pytest.raises(MasterKeyMismatch):
        await creds(store, NEW).reencrypt_all()
    again = await store.get(keys.credential_key(cred.access_key_id))
    assert again is not None and stored is not None and again.mod_revision == stored.mod_revision


def test_a_worker_never_creates_the_key_file(tmp_path: Path) -> None:
    """Workers load the file their supervisor made; one that is gone is an
    error naming it, not a new key."""
    path = tmp_path / "master.key"
    with pytest.raises(ConfigError, match="master.key is gone"):
        load_master_key(str(path))
    assert not path.exists()
    path.write_bytes(NEW + b"\n" + OLD + b"\n")
    assert load_master_key(str(path)) == NEW + b"\n" + OLD
    path.write_bytes(b"not a key\n")
    with pytest.raises(ValueError):
        load_master_key(str(path))


@pytest_twisted.ensureDeferred
async def test_adopting_a_key_forgets_only_what_it_cannot_open(store: SqliteMetadataStore) -> None:
    lost = await creds(store, OLD).create(ALICE)
    await creds(store, OLD).check_master_key()
    kept = await creds(store, NEW).create(ALICE)  # written by a server that already had the new file
    assert await creds(store, NEW).adopt_master_key() == 1
    await creds(store, NEW).check_master_key()
    assert await store.get(keys.credential_key(lost.access_key_id)) is None
    assert await store.get(keys.credential_by_principal_key("alice", lost.access_key_id)) is None
    assert [c.access_key_id for c in await creds(store, NEW).list_keys("alice")] == [kept.access_key_id]
    assert "key check" in await refused(store, OLD)
