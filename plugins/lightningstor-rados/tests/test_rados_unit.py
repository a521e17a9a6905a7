"""Plugin behaviour that needs no Ceph: registration, option checking, a missing binding."""

from __future__ import annotations

import sys
from typing import Any

import pytest
import twisted.plugins
from lightningstor.errors import ConfigError
from lightningstor.interfaces import IStorageBackendFactory, PluginContext
from twisted.plugin import getPlugins
from zope.interface.verify import verifyObject

from lightningstor_rados.binding import import_rados
from lightningstor_rados.cluster import client_conf
from lightningstor_rados.options import RadosOptions, parse_options


def test_factory_is_found_by_twisted_plugin_loader() -> None:
    """The installed twisted/plugins module registers a factory named 'rados'."""
    found = {f.name: f for f in getPlugins(IStorageBackendFactory, twisted.plugins)}
    assert "rados" in found
    assert verifyObject(IStorageBackendFactory, found["rados"])


def test_defaults() -> None:
    """An empty [storage.rados] table gives the documented defaults."""
    assert parse_options({"backend": "rados", "chunk_size_bytes": 8 << 20}) == RadosOptions()


def test_full_table() -> None:
    """Every key is read from the plugin's own sub-table."""
    opts = parse_options({"rados": {
        "conf_file": "/etc/ceph/x.conf", "user": "lightningstor", "keyring": "/k", "pool": "p1",
        "create_pool": True, "namespace": "org-a", "op_timeout_seconds": 5, "connect_timeout_seconds": 3.0,
        "threads": 4, "verify_crc": False,
    }})
    assert opts == RadosOptions("/etc/ceph/x.conf", "lightningstor", "/k", "p1", True, "org-a", 5.0, 3.0, 4, False)


@pytest.mark.parametrize(("table", "key"), [
    ({"pol": "x"}, "storage.rados.pol: unknown key"),
    ({"pool": ""}, "storage.rados.pool"),
    ({"pool": "a b"}, "storage.rados.pool"),
    ({"create_pool": "yes"}, "storage.rados.create_pool"),
    ({"namespace": "a/b"}, "storage.rados.namespace"),
    ({"op_timeout_seconds": 0}, "storage.rados.op_timeout_seconds"),
    ({"op_timeout_seconds": True}, "storage.rados.op_timeout_seconds"),
    # librados takes whole seconds: a fraction failed start-up as a bad conf_file
    ({"op_timeout_seconds": 2.5}, "storage.rados.op_timeout_seconds: must be a whole number"),
    ({"connect_timeout_seconds": 0.5}, "storage.rados.connect_timeout_seconds"),
    ({"threads": 0}, "storage.rados.threads"),
    ({"keyring": ""}, "storage.rados.keyring"),
    ({"conf_file": 3}, "storage.rados.conf_file"),
])
def test_bad_options_name_the_key(table: dict[str, Any], key: str) -> None:
    """Each invalid value is a ConfigError whose message starts with the dotted key."""
    with pytest.raises(ConfigError) as info:
        parse_options({"rados": table})
    assert str(info.value).startswith(key)


def test_client_conf_bounds_every_call() -> None:
    """The op timeout reaches librados's OSD and monitor op timeouts; the keyring is passed on."""
    conf = client_conf(RadosOptions(op_timeout_seconds=5, connect_timeout_seconds=3, keyring="/k"))
    assert conf == {"rados_osd_op_timeout": "5", "rados_mon_op_timeout": "5",
                    "client_mount_timeout": "3", "keyring": "/k"}


def test_missing_binding_is_a_clear_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the rados module, start-up fails with a ConfigError saying how to install it."""
    monkeypatch.setitem(sys.modules, "rados", None)  # makes `import rados` raise ImportError
    with pytest.raises(ConfigError, match=r"^storage\.rados: .*python3-rados.*link-system-rados\.sh"):
        import_rados()


def test_factory_fails_before_connecting_when_binding_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """create() raises the binding ConfigError (which twistd prints) rather than an ImportError."""
    from twisted.plugins.lightningstor_rados import radosStorageFactory

    monkeypatch.setitem(sys.modules, "rados", None)
    with pytest.raises(ConfigError, match="python3-rados"):
        radosStorageFactory.create({"rados": {}}, PluginContext(reactor=None, io_pool=None, data_dir="/x"))
