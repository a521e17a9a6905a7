"""LightningStor storage backend that keeps chunks as objects in a Ceph RADOS pool.

Shipped as its own distribution to show (and test) that a third party can
add a backend using only LightningStor's public plugin interfaces
(``lightningstor.interfaces`` and ``lightningstor.errors``).  The factory is
registered by ``twisted/plugins/lightningstor_rados.py``; nothing here is
imported until a server selects ``[storage] backend = "rados"``.
"""

__version__ = "0.1.0"
