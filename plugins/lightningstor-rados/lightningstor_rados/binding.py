"""Loading the ``rados`` Python binding, which PyPI does not ship.

The binding is a C extension built together with librados by the Ceph
packagers (Debian's ``python3-rados``).  A virtualenv does not see it unless
its directory is put on ``sys.path`` (see ``scripts/link-system-rados.sh``),
so a missing binding is the most likely start-up problem and deserves a
message that says what to do rather than a bare ImportError.
"""

from __future__ import annotations

import sys
from types import ModuleType

from lightningstor.errors import ConfigError

MISSING_HINT = (
    "storage.rados: the Ceph 'rados' Python binding cannot be imported ({error}). "
    "Install Debian's python3-rados (built for Python {major}.{minor}) and make it visible to this "
    "Python: run plugins/lightningstor-rados/scripts/link-system-rados.sh <venv>, or add "
    "/usr/lib/python3/dist-packages to sys.path (docs/rados.md)"
)


def import_rados() -> ModuleType:
    """Return the ``rados`` module or raise ConfigError explaining how to install it."""
    try:
        import rados  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError as exc:
        raise ConfigError(
            MISSING_HINT.format(error=exc, major=sys.version_info.major, minor=sys.version_info.minor)
        ) from None
    return rados
