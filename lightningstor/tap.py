"""``twistd lightningstor``: command-line options and the service maker.

Options follow SPEC §8.3; validation and merging with the environment and
the config file happen in :mod:`lightningstor.config` so that
``lightningstor-admin check-config`` reports exactly what start-up would.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.application.service import IService
from twisted.python import usage

from lightningstor import __version__
from lightningstor.config import load_settings, parse_address
from lightningstor.errors import ConfigError


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Run the LightningStor S3-compatible object store. With no options it "
        "serves S3 on 0.0.0.0:9000 with SQLite metadata and local chunk storage "
        "under the data directory."
    )
    optParameters = [
        ["config", "c", None, "Config file path (TOML)."],
        ["grpc-addr", None, None, "gRPC listen address (default 0.0.0.0:9001)."],
        ["s3-addr", None, None, "S3 HTTP listen address (default 0.0.0.0:9000)."],
        ["log-level", "l", None, "Log level: trace, debug, info, warn (or warning), error, critical."],
        ["data-dir", None, None, "Data directory (default /var/lib/lightningstor)."],
        ["workers", "w", None, "Reactor processes sharing the ports (default: one per CPU; see [server] workers)."],
    ]

    def opt_version(self) -> None:
        """Print the version and exit."""
        print(f"lightningstor {__version__}")
        raise SystemExit(0)

    opt_V = opt_version
    opt_h = usage.Options.opt_help  # SPEC: -h, --help

    def postOptions(self) -> None:
        from lightningstor.tls import hold_reload_signals

        hold_reload_signals()  # a SIGHUP while starting must not kill the server
        cli = {
            "config": self["config"],
            "grpc_addr": self["grpc-addr"],
            "s3_addr": self["s3-addr"],
            "log_level": self["log-level"],
            "data_dir": self["data-dir"],
            "workers": self["workers"],
        }
        try:
            self["settings"] = load_settings(env=os.environ, cli=cli)
        except ConfigError as e:
            raise usage.UsageError(str(e)) from None


def makeService(options: Any) -> IService:
    from twisted.internet import reactor
    from twisted.logger import Logger

    from lightningstor import plugins
    from lightningstor.logs import LoggingRoot, twistd_observer_factory
    from lightningstor.run_user import (
        CreatedPaths,
        check_run_user,
        check_worker_grpc_port,
        files_to_read,
        run_user,
    )
    from lightningstor.tls import refuse_tls12_on_grpc
    from lightningstor.workers import WorkerSupervisor, child_argv, supervisor_log, worker_role_from_env

    settings = options["settings"]
    # Before grpc is imported (build() imports it): its core reads the
    # variable once, at import.
    tls13_grpc = refuse_tls12_on_grpc()
    if settings.server.tls is not None and not tls13_grpc:
        Logger().warn("GRPC_SSL_CIPHER_SUITES is set in the environment: the gRPC port may accept TLS 1.2")
    role = worker_role_from_env(os.environ)
    # [logging] format/level: twistd picks its log observer after this
    # returns; LoggingRoot hands it ours (see lightningstor.logs).  No
    # twistd options (makeService called directly): leave logging alone.
    parent = getattr(options, "parent", None)
    observer = None if parent is None else twistd_observer_factory(settings.logging, parent, reactor, shared=role is not None)
    # twistd --uid/--gid: switches user only after this returns.
    user = run_user(parent)
    created = None
    if user is not None:
        created = CreatedPaths(user, _created_at_start(settings))
    try:
        if user is not None:
            check_run_user(user, settings.data_dir, files_to_read(settings))
        if role is None and settings.server.workers > 1:
            if user is not None and settings.server.grpc_enabled:
                check_worker_grpc_port(user, parse_address(settings.server.grpc_addr, key="server.grpc_addr")[1])
            # [server] workers: this process only binds and supervises
            # (lightningstor.workers); the children run build().
            supervisor = WorkerSupervisor(
                settings,
                reactor,
                child_argv(options, settings),
                dict(os.environ),
                log=supervisor_log(settings, parent),
                pidfile=None if parent is None else parent.get("pidfile") or None,
            )
            # A plugin name nothing provides fails here, with its message,
            # rather than in each worker (a daemon's workers have no stderr).
            plugins.check_configured(settings)
            supervisor.bind()
            service: IService = supervisor
        else:
            # Imported only here: a supervisor never serves, and the server's
            # modules are about a third of a process's memory.
            from lightningstor.server import build

            service = build(settings, reactor, worker=role)
            if role is None and parent is not None:
                # A one-process server acts on its first SIGTERM or SIGINT,
                # as a worker does: a second one during the drain made
                # Twisted log a ReactorNotRunning traceback at critical level
                # and ended the process by that signal.
                from lightningstor.workers import stop_signals_once

                reactor.callWhenRunning(stop_signals_once, reactor)
    except ConfigError as e:
        # twistd shows a traceback for anything makeService raises; this is
        # one line for the operator, and exit status 1.
        raise SystemExit(f"twistd lightningstor: {e}") from None
    finally:
        # Also after a failed start (a port in use): the next start, as that
        # user, must find what this one created usable.
        if created is not None:
            created.hand_over()
    return service if observer is None else LoggingRoot(service, observer)


def _created_at_start(settings: Any) -> list[str]:
    """What the server may create while twistd still runs as root: the data
    directory, the master key, the audit log and the chunk directory."""
    paths = [settings.data_dir, settings.security.master_key_file, settings.storage.data_dir]
    if settings.audit.enabled:
        paths.append(settings.audit.path)
    return paths


def server_main(argv: list[str] | None = None) -> None:
    """``lightningstor-server [OPTIONS]`` (SPEC §8.3, §10.1): the server in
    the foreground, as ``twistd -n --pidfile= lightningstor [OPTIONS]``.

    The same program and options: twistd remains the entry point (its plugin
    finds this package's service maker), so ``--help``, ``-V``, the worker
    processes and the signals behave exactly as under ``twistd``; twistd's
    own options (daemonizing, a pid file, a log file) need ``twistd``.
    """
    import sys

    from twisted.scripts.twistd import run

    args = sys.argv[1:] if argv is None else argv
    sys.argv = [sys.argv[0], "-n", "--pidfile=", "lightningstor", *args]
    run()
