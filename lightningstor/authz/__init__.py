"""Authorizer plugins: ``local`` (roles and grants in the metadata store) and
``aegis`` (the platform IAM service).  See :mod:`lightningstor.core.access`."""
