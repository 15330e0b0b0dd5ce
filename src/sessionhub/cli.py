"""The ``sessionhub`` command: serve, health, stats, config check, hash-password, keys."""

from __future__ import annotations

import argparse
import base64
import contextlib
import getpass
import glob
import http.client
import json
import logging
import os
import secrets
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import yaml

from .config import Settings, load_settings, redacted
from .embedded import redis_for
from .exceptions import ConfigError, RedisConfigError, SessionHubError

if TYPE_CHECKING:
    from .hub import SessionHub

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
SERVICE_EXTRA = "pip install 'sessionhub[service]'"


class CommandError(SessionHubError):
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
    with service_extra("serve"):  # a missing extra is reported before a Redis is started
        import uvicorn  # noqa: F401

        from .service.app import create_app  # noqa: F401
        from .service.logs import configure_service_logging

    if args.config:
        os.environ["SESSIONHUB_CONFIG"] = args.config  # worker processes load the same file
    settings = _settings(args)
    _check_redis_url(settings)
    configure_service_logging(settings.server.log_level, settings.log.format)
    host = args.host or settings.server.host
    port = args.port or settings.server.port
    workers = args.workers or settings.server.workers
    with redis_for(settings) as served:
        _refuse_redis_mistakes(served)  # the Redis it will use: configured, or its own
        if served is not settings and served.redis.url is not None:
            os.environ["REDIS_URL"] = served.redis.url  # worker processes use it too
        _run_service(served, host, port, workers)
    return 0


def _run_service(settings: Settings, host: str, port: int, workers: int) -> None:
    import uvicorn

    from .service.app import create_app, users_file

    if workers == 1:
        uvicorn.run(
            create_app(settings, users_file(settings)),
            host=host,
            port=port,
            log_level=settings.server.log_level,
            access_log=settings.server.access_log,
            log_config=None,  # uvicorn's lines go through the handler configured above
        )
        return
    if settings.metrics.enabled:
        _metrics_directory()
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
        log_config=None,
    )


def _metrics_directory() -> None:
    """Give the workers one PROMETHEUS_MULTIPROC_DIR, emptied: files of an earlier run would
    add its counts to this one's."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        path = tempfile.mkdtemp(prefix="sessionhub-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    os.makedirs(path, exist_ok=True)
    for stale in glob.glob(os.path.join(path, "*.db")):
        os.remove(stale)


def _reason(exc: BaseException) -> str:
    """The human part of a network error: "Connection refused", not its errno and classes."""
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    if isinstance(reason, http.client.BadStatusLine):
        return "the answer is not HTTP"
    return str(reason) or type(reason).__name__


def _get(url: str, method: str = "GET", key: str | None = None) -> tuple[int, bytes]:
    headers = {} if key is None else {"Authorization": f"Bearer {key}"}
    request = urllib.request.Request(url, method=method, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:  # noqa: S310 - checked http(s)
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _ask_service(
    base_url: str, path: str, *, method: str = "GET", key: str | None = None
) -> tuple[int, dict[str, Any]]:
    """Call one endpoint of a running service (``key``: the admin key): its HTTP status and the
    ``data`` of its answer.

    Not getting that answer, for whatever reason, is a one-line :class:`CommandError`; so is an
    error answer, with exit code 2 when it is a 4xx (the user's mistake: a wrong id or key).
    """
    if not base_url.startswith(("http://", "https://")):
        raise CommandError(f"--url {base_url!r}: expected http://HOST:PORT or https://...", code=2)
    url = base_url.rstrip("/") + path
    try:
        status, raw = _get(url, method, key)
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
        code = 2 if key is not None and 400 <= status < 500 else 1
        raise CommandError(f"{url} answered HTTP {status}: {error['message']}", code=code)
    raise CommandError(f"{url} answered HTTP {status}, not as a SessionHub service does")


def local_hub(settings: Settings) -> SessionHub:
    """A hub of our own on the configured Redis, quiet: this command reports problems itself."""
    from .hub import SessionHub

    _check_redis_url(settings)
    # The hub logs for a long-running service (no SECRET_KEY, Redis down); this command says
    # what matters here itself, in one line.
    logging.getLogger("sessionhub").addHandler(logging.NullHandler())
    return SessionHub(settings)


def redis_problem(hub: SessionHub) -> str | None:
    """Why the hub's Redis is unavailable, or None when it is not."""
    core = hub.manager.core
    if not core.degraded:
        return None
    url = hub.settings.redis.masked_url()
    return f"Redis at {url} is unavailable: {core.last_error or 'no answer'}"


def _ask_local_hub(args: argparse.Namespace, what: str) -> tuple[dict[str, Any], str | None]:
    """Health or stats from a hub of our own on the configured Redis, and why Redis is
    unavailable (None when it is not)."""
    hub = local_hub(_settings(args))
    try:
        result = dict(hub.health() if what == "health" else hub.stats())
        return result, redis_problem(hub)
    finally:
        hub.close()


def _refuse_redis_mistakes(settings: Settings) -> None:
    """Raise RedisConfigError when Redis refuses the configuration (password, ACL, TLS, master
    name): the service would otherwise start and serve from memory as if Redis were down."""
    if settings.session.type != "redis":
        return
    quiet = logging.getLogger("sessionhub")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL + 1)  # the one line the caller prints says it all
    try:
        hub = local_hub(settings)
        try:
            mistake = hub.manager.core.config_error()
        finally:
            hub.close()
    finally:
        quiet.setLevel(level)
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


def read_password() -> str:
    """A password from the terminal (asked twice) or one line of stdin; CommandError (exit 2)
    when it is empty, mistyped or not UTF-8."""
    if sys.stdin.isatty():
        try:
            password = getpass.getpass("Password: ")
            repeated = getpass.getpass("Repeat: ")
        except EOFError:  # Ctrl-D at the prompt
            repeated = password = ""
        if repeated != password:
            raise CommandError("passwords do not match", code=2)
    else:
        line = sys.stdin.buffer.readline().rstrip(b"\r\n")
        try:
            # Decoded here, strictly: under a C locale sys.stdin turns bytes that are not
            # UTF-8 into surrogates, which argon2 then fails to encode with a traceback.
            password = line.decode("utf-8")
        except UnicodeDecodeError:
            raise CommandError("the password is not UTF-8 text", code=2) from None
    if not password:
        raise CommandError("empty password", code=2)
    return password


def cmd_hash_password(args: argparse.Namespace) -> int:
    with service_extra("hash-password"):
        from .service.auth import hash_password

    print(hash_password(read_password()))
    return 0


def cmd_keys_new(args: argparse.Namespace) -> int:
    print(base64.b64encode(secrets.token_bytes(32)).decode())
    return 0


BAR_WIDTH = 30


def _progress_line(scanned: int, total: int, rewritten: int) -> str:
    share = min(1.0, scanned / total) if total else 1.0
    filled = round(share * BAR_WIDTH)
    bar = "#" * filled + "." * (BAR_WIDTH - filled)
    return f"[{bar}] {share:4.0%} {scanned} keys scanned, {rewritten} values re-encrypted"


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    from .hub import SessionHub
    from .rotation import KeyRotation
    from .stores.redis import classify
    from .stores.topology import describe, masters

    settings = _settings(args)
    if settings.session.type != "redis":
        raise CommandError("keys rotate re-encrypts what Redis holds; SESSION.TYPE is memory")
    if not settings.encryption.keys:
        raise CommandError("ENCRYPTION.KEYS is empty: there is no key to rotate to")
    _check_redis_url(settings)
    logging.getLogger("sessionhub").addHandler(logging.NullHandler())
    hub = SessionHub(settings)
    try:
        rotation = KeyRotation(
            hub.manager.values,
            settings.session.key_prefix,
            batch=args.batch,
            masters=lambda: masters(hub.client),
        )
        to = settings.encryption.keys[0].id
        while True:
            try:
                progress = hub.run(rotation.step())
            except Exception as exc:
                fault = classify(exc)
                if fault is None and not isinstance(exc, OSError):
                    raise
                why = "Redis is unavailable" if fault is None else fault.message
                raise CommandError(
                    f"{why} ({describe(settings.redis)}: {exc}); run "
                    "`sessionhub keys rotate` again to resume"
                ) from None
            line = _progress_line(progress.scanned, progress.total, progress.rewritten)
            print(f"\r{line}", end="", file=sys.stderr, flush=True)
            if progress.done:
                break
        print(file=sys.stderr)
    finally:
        hub.close()
    print(
        f"rotation to key {to!r} complete: {progress.rewritten} values re-encrypted, "
        f"{progress.unreadable} under keys no longer listed, {progress.conflicts} changed "
        "too often to rewrite"
    )
    if progress.unreadable or progress.conflicts:
        print(
            "sessionhub: some values are not under the first key; keep the old keys listed "
            "(and run it again for the changed ones)",
            file=sys.stderr,
        )
        return 1
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

    keys = sub.add_parser("keys", help="encryption keys (ENCRYPTION.KEYS)")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    new = keys_sub.add_parser("new", help="print a new random key (32 bytes, base64)")
    new.set_defaults(func=cmd_keys_new)
    rotate = with_config(
        keys_sub.add_parser(
            "rotate",
            help="re-encrypt every stored value under the first key (resumable, online)",
        )
    )
    rotate.add_argument(
        "--batch", type=_int_from(1, 100_000), default=200, help="keys per SCAN (default 200)"
    )
    rotate.set_defaults(func=cmd_keys_rotate)
    from . import cli_admin  # it uses this module's helpers

    cli_admin.add_commands(sub, with_config)
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
    # Run as `python -m sessionhub.cli`, this file is __main__, a second copy of the module:
    # the commands in cli_admin raise sessionhub.cli's CommandError, which only that copy's
    # main() catches.
    from sessionhub.cli import main as package_main

    sys.exit(package_main())
