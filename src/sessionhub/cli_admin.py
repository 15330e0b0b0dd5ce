"""The operator's commands: ``sessions list``, ``sessions revoke``, ``top`` and ``users add``.

Each works straight on the configured Redis, or with ``--url`` against a running service (with
the first of ``ADMIN.API_KEYS`` / ``SESSIONHUB_ADMIN_API_KEYS`` as the bearer key).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import yaml

from .cli import (
    CommandError,
    _ask_service,
    _settings,
    local_hub,
    read_password,
    redis_problem,
    service_extra,
)
from .config import load_settings

if TYPE_CHECKING:
    from .hub import SessionHub

CLEAR = "\x1b[H\x1b[2J"
BARS = "▁▂▃▄▅▆▇█"
REFRESH_SECONDS = 1.0


def _admin_key(args: argparse.Namespace) -> str:
    keys = _settings(args).admin.api_keys
    if not keys:
        raise CommandError(
            "--url needs the admin key: set ADMIN.API_KEYS in the config or "
            "SESSIONHUB_ADMIN_API_KEYS",
            code=2,
        )
    return keys[0].get_secret_value()


@contextlib.contextmanager
def _redis_hub(args: argparse.Namespace) -> Iterator[SessionHub]:
    """A hub on the configured Redis; Redis unavailable is an error, not a memory store's view."""
    hub = local_hub(_settings(args))
    try:
        problem = redis_problem(hub)
        if problem is not None:
            raise CommandError(problem)
        yield hub
    finally:
        hub.close()


def _user_path(user: str, handle: str | None = None) -> str:
    path = f"/api/admin/users/{quote(user, safe='')}/sessions"
    return path if handle is None else f"{path}/{quote(handle, safe='')}"


def _require_secret_for_ids(args: argparse.Namespace) -> None:
    """Straight on Redis, a session's id is keyed with SECRET_KEY. With none set, every run
    makes up a key of its own, so an id one run lists matches nothing in the next."""
    if _settings(args).secret_key is None:
        raise CommandError(
            "session ids are keyed with SECRET_KEY and none is set: set SECRET_KEY to the "
            "service's (config file or environment), or ask the running service with --url",
            code=2,
        )


def cmd_sessions_list(args: argparse.Namespace) -> int:
    if args.url:
        _, data = _ask_service(args.url, _user_path(args.user), key=_admin_key(args))
        sessions: list[dict[str, Any]] = data["sessions"]
    else:
        _require_secret_for_ids(args)
        with _redis_hub(args) as hub:
            sessions = [info.view() for info in hub.user_sessions.list(args.user)]
    if not sessions:
        print(f"{args.user} has no live sessions")
        return 0
    rows = [("ID", "DEVICE", "IP", "LAST SEEN", "SIGNED IN")]
    rows += [
        (s["id"], s["user_agent"] or "-", s["ip"] or "-", s["last_seen_at"], s["created_at"])
        for s in sessions
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    return 0


def cmd_sessions_revoke(args: argparse.Namespace) -> int:
    if args.url:
        method_path = _user_path(args.user, None if args.all else args.id)
        _, data = _ask_service(args.url, method_path, method="DELETE", key=_admin_key(args))
        revoked = int(data["revoked"])
    else:
        if not args.all:
            _require_secret_for_ids(args)
        with _redis_hub(args) as hub:
            if args.all:
                revoked = hub.user_sessions.revoke_all(args.user)
            elif hub.user_sessions.revoke(args.user, args.id):
                revoked = 1
            else:
                raise CommandError(f"{args.user} has no live session {args.id!r}", code=2)
    print(f"revoked {revoked} session(s) of {args.user}")
    return 0


def _spark(values: list[int]) -> str:
    top = max(values, default=0)
    if top == 0:
        return BARS[0] * len(values)
    return "".join(BARS[min(len(BARS) - 1, v * (len(BARS) - 1) // top)] for v in values)


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover - the loop always returns


def render(data: dict[str, Any], where: str, *, service: bool) -> str:
    """The dashboard's figures as a screen of text."""
    health, stats, online = data["health"], data["stats"], data["online"]
    latency = "" if health["latency_ms"] is None else f", {health['latency_ms']} ms"
    lines = [
        f"SessionHub top - {where} - {data['generated_at']}   (q quits)",
        "",
        f"Redis         {health['status']} (mode {health['mode']}{latency})",
    ]
    if data["degraded_since"]:
        lines.append(f"              degraded since {data['degraded_since']}")
    if health["last_error"]:
        lines.append(f"              last error: {health['last_error']}")
    in_redis = "unknown" if stats["redis_sessions"] is None else stats["redis_sessions"]
    lines += [
        f"Sessions      {stats['total_sessions']} "
        f"(Redis {in_redis}, memory only {stats['memory_sessions']})",
        f"Online users  {online['online_users']} (active within {online['window_seconds']} s)",
    ]
    if service:  # a command's own memory store holds nothing worth showing
        store = data["memory_store"]
        lines.append(f"Memory store  {store['sessions']} of at most {store['max_sessions']}")
    memory = data["redis_memory"]
    if memory is None:
        lines.append("Redis memory  - (Redis does not answer)")
    else:
        limit = _size(memory["max_bytes"]) if memory["max_bytes"] else "none"
        lines.append(
            f"Redis memory  {_size(memory['used_bytes'])} "
            f"(peak {_size(memory['peak_bytes'])}, limit {limit})"
        )
    activity = data["activity"]
    logins = [int(m["logins"]) for m in activity]
    sessions = [int(m["sessions"] or 0) for m in activity]
    lines += [
        "",
        f"Last hour     {sum(logins)} logins; per minute, oldest first:",
        f"  logins      {_spark(logins)}  max {max(logins, default=0)}",
        f"  sessions    {_spark(sessions)}  max {max(sessions, default=0)}",
    ]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def _keys() -> Iterator[Callable[[float], str]]:
    """A function that waits up to the given seconds for a key press and returns it ('' if
    none); the terminal, if stdin is one, is in cbreak mode meanwhile so keys need no Enter."""
    fd = sys.stdin.fileno()
    restore: Callable[[], None] = lambda: None  # noqa: E731
    if os.isatty(fd):
        import termios
        import tty

        saved = termios.tcgetattr(fd)
        tty.setcbreak(fd)

        def restore() -> None:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)

    open_input = True

    def read(timeout: float) -> str:
        nonlocal open_input
        if open_input and select.select([fd], [], [], timeout)[0]:
            key = os.read(fd, 1).decode(errors="replace")
            open_input = key != ""  # at end of input only Ctrl-C stops it
            if open_input:
                return key
        time.sleep(timeout if not open_input else 0)
        return ""

    try:
        yield read
    finally:
        restore()


def cmd_top(args: argparse.Namespace) -> int:
    hub: SessionHub | None = None
    if args.url:
        key = _admin_key(args)
        where = args.url

        def overview() -> dict[str, Any]:
            return _ask_service(args.url, "/api/admin/overview", key=key)[1]

    else:
        hub = local_hub(_settings(args))
        where = hub.settings.redis.masked_url()

        def overview() -> dict[str, Any]:
            assert hub is not None
            return dict(hub.dashboard.overview())

    try:
        screen = render(overview(), where, service=hub is None)  # unreachable: fail at once
        with _keys() as read_key:
            while True:
                sys.stdout.write(CLEAR + screen)
                sys.stdout.flush()
                if read_key(REFRESH_SECONDS).lower() == "q":
                    return 0
                try:
                    screen = render(overview(), where, service=hub is None)
                except CommandError as exc:  # keep watching: the service may come back
                    screen = f"{where}: {exc}\n"
    finally:
        if hub is not None:
            hub.close()


def _config_path(args: argparse.Namespace) -> Path:
    return Path(args.config or os.environ.get("SESSIONHUB_CONFIG") or "config.yaml")


def cmd_users_add(args: argparse.Namespace) -> int:
    with service_extra("users add"):
        from .service.auth import hash_password

    path = _config_path(args)
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    data = yaml.safe_load(text) if text.strip() else {}
    if not isinstance(data, dict):
        raise CommandError(f"{path}: not a mapping of sections; fix it first", code=2)
    listed = data.get("USERS") or []
    if not isinstance(listed, list):
        raise CommandError(f"{path}: USERS is not a list; fix it first", code=2)
    users = [u for u in listed if not (isinstance(u, dict) and u.get("USERNAME") == args.name)]
    replaced = len(users) < len(listed)
    users.append({"USERNAME": args.name, "PASSWORD_HASH": hash_password(read_password())})
    if "USERS" in data:
        # Rewriting loses the file's comments; only done when a USERS list is already there.
        data["USERS"] = users
        new_text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    else:
        entry = yaml.safe_dump({"USERS": users}, sort_keys=False, allow_unicode=True)
        new_text = text + ("" if text.endswith("\n") or not text else "\n") + entry
    # Checked as the service will read it, before the file is touched.
    draft = path.with_name(f".{path.name}.new")
    draft.write_text(new_text, encoding="utf-8")
    try:
        load_settings(draft, env={})
    except BaseException:
        draft.unlink()
        raise
    draft.replace(path)
    verb = "updated" if replaced else "added"
    print(f"{verb} user {args.name} in {path}; a running service picks it up at its next login")
    return 0


def add_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser],
) -> None:
    """Add ``sessions list``, ``sessions revoke`` and ``top`` to the ``sessionhub`` parser."""

    def with_url(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        with_config(p).add_argument(
            "--url", help="ask a running service (e.g. http://127.0.0.1:5000) with the admin key"
        )
        return p

    sessions = sub.add_parser("sessions", help="a user's sessions")
    sessions_sub = sessions.add_subparsers(dest="sessions_command", required=True)
    listing = with_url(sessions_sub.add_parser("list", help="list a user's live sessions"))
    listing.add_argument("--user", required=True, metavar="ID")
    listing.set_defaults(func=cmd_sessions_list)
    revoke = with_url(sessions_sub.add_parser("revoke", help="revoke a user's sessions"))
    revoke.add_argument("--user", required=True, metavar="ID")
    which = revoke.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="every session of the user")
    which.add_argument("--id", metavar="ID", help="one session, by the id `sessions list` shows")
    revoke.set_defaults(func=cmd_sessions_revoke)

    top = with_url(sub.add_parser("top", help="live view of the dashboard's figures (q quits)"))
    top.set_defaults(func=cmd_top)

    users = sub.add_parser("users", help="login accounts in the config file")
    users_sub = users.add_subparsers(dest="users_command", required=True)
    add = with_config(
        users_sub.add_parser("add", help="read a password, write the user's hash to the config")
    )
    add.add_argument("name", metavar="NAME")
    add.set_defaults(func=cmd_users_add)
