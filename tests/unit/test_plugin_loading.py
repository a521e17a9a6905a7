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


def _find_defaults_in_a_fresh_process(env_value: str | None) -> tuple[str, str]:
    """Find the default plugins in a new interpreter (RESOLVED_ENV set to
    ``env_value``, or unset): which modules that imported, and the factories."""
    import os

    script = (
        "import sys\n"
        "from lightningstor import plugins\n"
        "found = (plugins.find_storage_factory('local'), plugins.find_metadata_factory('sqlite'),\n"
        "         plugins.find_authorizer_factory('local'))\n"
        "print(sorted(m for m in sys.modules if m in ('unittest', 'twisted.trial')))\n"
        "print([type(f).__module__ + '.' + f.name for f in found])\n"
    )
    env = {k: v for k, v in os.environ.items() if k != plugins.RESOLVED_ENV}
    if env_value is not None:
        env[plugins.RESOLVED_ENV] = env_value
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    imported, factories = done.stdout.strip().splitlines()
    return imported, factories


def test_workers_import_the_plugin_modules_their_supervisor_found() -> None:
    """The process that starts the workers resolves each configured plugin
    to its module; a worker given that (RESOLVED_ENV) imports only those
    modules, not Twisted's plugin cache, whose unpickling imports every
    installed plugin's interfaces (twisted.trial and unittest among them,
    about 1 MiB a worker).  The same factories either way; a value that
    resolves nothing (stale, malformed) falls back to the search."""
    import json

    from lightningstor.config import Settings

    resolved = plugins.resolved_modules(Settings())
    assert resolved == {
        "IMetadataStoreFactory:sqlite": "twisted.plugins.lightningstor_builtins",
        "IStorageBackendFactory:local": "twisted.plugins.lightningstor_builtins",
        "IAuthorizerFactory:local": "twisted.plugins.lightningstor_builtins",
    }
    searched = _find_defaults_in_a_fresh_process(None)
    assert searched[0] == "['twisted.trial', 'unittest']"  # what a search costs
    assert _find_defaults_in_a_fresh_process(json.dumps(resolved)) == ("[]", searched[1])
    for stale in ('{"IStorageBackendFactory:local": "twisted.plugins.gone"}', "not json", '["a"]'):
        assert _find_defaults_in_a_fresh_process(stale)[1] == searched[1]
