"""The ``sessionhub`` command: serve, health, stats, config check, hash-password."""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import logging
import os
import secrets
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from typing import Any

import yaml

from .config import Settings, load_settings, redacted
from .exceptions import ConfigError

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
SERVICE_EXTRA = "pip install 'sessionhub[service]'"


class CommandError(Exception):
    """A problem the user can fix, reported as one line on stderr with the given exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


@contextlib.contextmanager
def service_extra(command: str) -> Iterator[None]:
    """Imports made inside come from the `service` extra; without it, say what to install."""
    try:
        yield
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").partition(".")[0]
        if missing in ("", __package__):
            raise  # a module of our own missing is a broken install, not a missing extra
        raise CommandError(
            f"{command} needs the service extra ({missing} is not installed): {SERVICE_EXTRA}",
            code=2,
        ) from None


def configure_logging(level: str) -> None:
    """One line per record on stderr; idempotent."""
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT, stream=sys.stderr)
    logging.getLogger("sessionhub").setLevel(level.upper())


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.config)


def cmd_serve(args: argparse.Namespace) -> int:
    with service_extra("serve"):
        import uvicorn

        from .service.app import create_app

    if args.config:
        os.environ["SESSIONHUB_CONFIG"] = args.config  # worker processes load the same file
    settings = _settings(args)
    configure_logging(settings.server.log_level)
    host = args.host or settings.server.host
    port = args.port or settings.server.port
    workers = args.workers or settings.server.workers
    if workers == 1:
        uvicorn.run(
            create_app(settings),
            host=host,
            port=port,
            log_level=settings.server.log_level,
            access_log=settings.server.access_log,
        )
        return 0
    if settings.secret_key is None:
        # Workers must agree on the key, or a cookie set by one is rejected by another.
        os.environ["SECRET_KEY"] = secrets.token_urlsafe(32)
        logging.getLogger("sessionhub").warning(
            "No SECRET_KEY set: generated one for this run; sessions will not survive a restart"
        )
    uvicorn.run(
        "sessionhub.service.app:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=settings.server.log_level,
        access_log=settings.server.access_log,
    )
    return 0


def _fetch(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - operator-given URL
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def _local_hub_call(args: argparse.Namespace, what: str) -> dict[str, Any]:
    from .hub import SessionHub

    settings = _settings(args)
    hub = SessionHub(settings)
    try:
        result: dict[str, Any] = hub.health() if what == "health" else hub.stats()
        return result
    finally:
        hub.close()


def cmd_health(args: argparse.Namespace) -> int:
    if args.url:
        _, body = _fetch(args.url.rstrip("/") + "/api/health/redis")
        data = body.get("data", body)
    else:
        data = _local_hub_call(args, "health")
    print(json.dumps(data, indent=2))
    return 0 if data.get("status") == "healthy" else 1


def cmd_stats(args: argparse.Namespace) -> int:
    if args.url:
        status, body = _fetch(args.url.rstrip("/") + "/api/session/stats")
        data = body.get("data", body)
        print(json.dumps(data, indent=2))
        return 0 if status == 200 else 1
    print(json.dumps(_local_hub_call(args, "stats"), indent=2))
    return 0


def cmd_config_check(args: argparse.Namespace) -> int:
    settings = _settings(args)
    print(f"# configuration OK (source: {settings.source or 'defaults'})")
    print(yaml.safe_dump(redacted(settings), sort_keys=False), end="")
    return 0


def cmd_hash_password(args: argparse.Namespace) -> int:
    with service_extra("hash-password"):
        from .service.auth import hash_password

    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat: ") != password:
            print("sessionhub: passwords do not match", file=sys.stderr)
            return 2
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        print("sessionhub: empty password", file=sys.stderr)
        return 2
    print(hash_password(password))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sessionhub", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", metavar="PATH", help="YAML config file (default: config.yaml)")
        return p

    serve = with_config(sub.add_parser("serve", help="run the HTTP service"))
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    serve.set_defaults(func=cmd_serve)

    for name, func, text in (
        ("health", cmd_health, "print Redis health as JSON; exit 1 when degraded"),
        ("stats", cmd_stats, "print session statistics as JSON"),
    ):
        p = with_config(sub.add_parser(name, help=text))
        p.add_argument("--url", help="ask a running service (e.g. http://127.0.0.1:5000)")
        p.set_defaults(func=func)

    config = sub.add_parser("config", help="configuration tools")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = with_config(config_sub.add_parser("check", help="validate and print the config"))
    check.set_defaults(func=cmd_config_check)

    hp = sub.add_parser("hash-password", help="read a password, print its argon2id hash")
    hp.set_defaults(func=cmd_hash_password)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"sessionhub: config error: {exc}", file=sys.stderr)
        return 2
    except CommandError as exc:
        print(f"sessionhub: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
