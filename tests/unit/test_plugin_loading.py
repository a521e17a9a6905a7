"""lightningstor.plugins: the built-in plugins are found by name without
importing their implementations; the one selected is the real factory."""

from __future__ import annotations

import subprocess
import sys

from zope.interface import providedBy

from lightningstor import plugins


def test_every_builtin_names_its_implementation_and_provides_its_interfaces() -> None:
    """A LazyFactory's name and interfaces are the real factory's (the name
    is written twice: here is where a rename would show)."""
    from twisted.plugins.lightningstor_builtins import BUILTINS

    assert len(BUILTINS) == 6
    for lazy in BUILTINS:
        real = lazy.load()
        assert real.name == lazy.name, lazy.target
        assert set(providedBy(real)) <= set(providedBy(lazy)), lazy.target
        assert lazy.description == real.description


def test_the_selected_factory_is_the_real_one() -> None:
    from lightningstor.authz.aegis import aegisAuthorizerFactory
    from lightningstor.metadata.etcd import etcdStoreFactory
    from lightningstor.storage.local import localStorageFactory

    assert plugins.find_storage_factory("local") is localStorageFactory
    assert plugins.find_metadata_factory("chainfire") is etcdStoreFactory
    assert plugins.find_authorizer_factory("aegis") is aegisAuthorizerFactory
    assert {"local", "distributed"} <= set(plugins.available_storage_backends())


def test_finding_the_default_plugins_imports_no_other_backend() -> None:
    """The default server (SQLite, local disk, local IAM) never imports etcd,
    the distributed store, its node client or the aegis client: each worker
    would hold about 5 MiB more."""
    script = (
        "import sys\n"
        "from lightningstor import plugins\n"
        "plugins.find_storage_factory('local'); plugins.find_metadata_factory('sqlite')\n"
        "plugins.find_authorizer_factory('local')\n"
        "print(sorted(m for m in sys.modules if m in ('lightningstor.metadata.etcd', 'lightningstor.storage.distributed',"
        " 'lightningstor.storage.nodeclient', 'lightningstor.authz.aegis', 'treq')))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
