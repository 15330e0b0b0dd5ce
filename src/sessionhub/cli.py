"""The ``sessionhub`` command: serve, health, stats, config check, hash-password."""

from __future__ import annotations

import argparse
import contextlib
import getpass
import http.client
import json
import logging
import os
import secrets
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import yaml

from .config import Settings, load_settings, redacted
from .exceptions import ConfigError, RedisConfigError

if TYPE_CHECKING:
    from .hub import SessionHub

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
    _check_redis_url(settings)
    _refuse_redis_mistakes(settings)
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


def _reason(exc: BaseException) -> str:
    """The human part of a network error: "Connection refused", not its errno and classes."""
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    if isinstance(reason, http.client.BadStatusLine):
        return "the answer is not HTTP"
    return str(reason) or type(reason).__name__


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - checked http(s)
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _ask_service(base_url: str, path: str) -> tuple[int, dict[str, Any]]:
    """GET one endpoint of a running service: its HTTP status and the ``data`` of its answer.

    Not getting that answer, for whatever reason, is a one-line :class:`CommandError`.
    """
    if not base_url.startswith(("http://", "https://")):
        raise CommandError(f"--url {base_url!r}: expected http://HOST:PORT or https://...", code=2)
    url = base_url.rstrip("/") + path
    try:
        status, raw = _get(url)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise CommandError(f"cannot reach {url}: {_reason(exc)}") from None
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("data"), dict):
        return status, body["data"]
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and "message" in error:
        raise CommandError(f"{url} answered HTTP {status}: {error['message']}")
    raise CommandError(f"{url} answered HTTP {status}, not as a SessionHub service does")


def _ask_local_hub(args: argparse.Namespace, what: str) -> tuple[dict[str, Any], str | None]:
    """Health or stats from a hub of our own on the configured Redis, and why Redis is
    unavailable (None when it is not)."""
    settings = _settings(args)
    _check_redis_url(settings)
    with _local_hub(settings) as hub:
        result = dict(hub.health() if what == "health" else hub.stats())
        core = hub.manager.core
        problem = None
        if core.degraded:
            url = settings.redis.masked_url()
            problem = f"Redis at {url} is unavailable: {core.last_error or 'no answer'}"
        return result, problem


@contextlib.contextmanager
def _local_hub(settings: Settings) -> Iterator[SessionHub]:
    """A blocking hub of this command's own on the configured Redis, closed on exit."""
    from .hub import SessionHub

    # The hub logs for a long-running service (no SECRET_KEY, Redis down); this command says
    # what matters here itself, in one line.
    logging.getLogger("sessionhub").addHandler(logging.NullHandler())
    hub = SessionHub(settings)
    try:
        yield hub
    finally:
        hub.close()


def _refuse_redis_mistakes(settings: Settings) -> None:
    """Raise RedisConfigError when Redis refuses the configuration (password, ACL, TLS, master
    name): the service would otherwise start and serve from memory as if Redis were down."""
    if settings.session.type != "redis":
        return
    with _local_hub(settings) as hub:
        mistake = hub.manager.core.config_error()
    if mistake is not None:
        raise mistake


def _check_redis_url(settings: Settings) -> None:
    """Raise ConfigError for a Redis URL that redis-py cannot parse, before a client needs it."""
    if settings.session.type != "redis":
        return
    import redis

    try:
        redis.ConnectionPool.from_url(settings.redis.connection_url())
    except ValueError as exc:
        raise ConfigError(f"REDIS.URL = {settings.redis.masked_url()!r}: {exc}") from None


def cmd_health(args: argparse.Namespace) -> int:
    if args.url:
        _, data = _ask_service(args.url, "/api/health/redis")
        problem = None
    else:
        data, problem = _ask_local_hub(args, "health")
    print(json.dumps(data, indent=2))
    if problem is not None:
        print(f"sessionhub: {problem}", file=sys.stderr)
    return 0 if data.get("status") == "healthy" else 1


def cmd_stats(args: argparse.Namespace) -> int:
    status = 200
    if args.url:
        status, data = _ask_service(args.url, "/api/session/stats")
    else:
        data, problem = _ask_local_hub(args, "stats")
        if problem is not None:
            # A fresh process's memory store holds nothing: its counts would only mislead.
            raise CommandError(problem)
    print(json.dumps(data, indent=2))
    return 0 if status == 200 else 1


def cmd_config_check(args: argparse.Namespace) -> int:
    settings = _settings(args)
    print(f"# configuration OK (source: {settings.source or 'defaults'})")
    if settings.session.type == "redis":
        from .stores.topology import describe

        print(f"# Redis {describe(settings.redis)}")
    print(yaml.safe_dump(redacted(settings), sort_keys=False), end="")
    return 0


def cmd_hash_password(args: argparse.Namespace) -> int:
    with service_extra("hash-password"):
        from .service.auth import hash_password

    if sys.stdin.isatty():
        try:
            password = getpass.getpass("Password: ")
            repeated = getpass.getpass("Repeat: ")
        except EOFError:  # Ctrl-D at the prompt
            repeated = password = ""
        if repeated != password:
            print("sessionhub: passwords do not match", file=sys.stderr)
            return 2
    else:
        line = sys.stdin.buffer.readline().rstrip(b"\r\n")
        try:
            # Decoded here, strictly: under a C locale sys.stdin turns bytes that are not
            # UTF-8 into surrogates, which argon2 then fails to encode with a traceback.
            password = line.decode("utf-8")
        except UnicodeDecodeError:
            print("sessionhub: the password is not UTF-8 text", file=sys.stderr)
            return 2
    if not password:
        print("sessionhub: empty password", file=sys.stderr)
        return 2
    print(hash_password(password))
    return 0


def _int_from(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer from ``low`` to ``high``, else a usage error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not from {low} to {high}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sessionhub", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", metavar="PATH", help="YAML config file (default: config.yaml)")
        return p

    serve = with_config(sub.add_parser("serve", help="run the HTTP service"))
    serve.add_argument("--host")
    serve.add_argument("--port", type=_int_from(1, 65535))
    serve.add_argument("--workers", type=_int_from(1, 64))  # SERVER.WORKERS' range
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
    except RedisConfigError as exc:
        print(f"sessionhub: Redis refuses the configuration: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"sessionhub: config error: {exc}", file=sys.stderr)
        return 2
    except CommandError as exc:
        print(f"sessionhub: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): nothing left to say, and nowhere to say it. Point
        # stdout at /dev/null so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
