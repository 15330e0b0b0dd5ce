"""SessionHub settings: a YAML file with UPPERCASE keys, overridden by environment variables.

:func:`load_settings` is the only way the application should build :class:`Settings`; it turns
every problem into a one-line :class:`~sessionhub.exceptions.ConfigError` that names the key,
the offending value (secrets masked) and what is allowed. ``docs/CONFIG.md`` lists every key.
"""

from __future__ import annotations

import difflib
import os
import types
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeGuard, Union, get_args, get_origin
from urllib.parse import quote

import argon2
import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

from sessionhub.exceptions import ConfigError

__all__ = [
    "AdminSettings",
    "AuthSettings",
    "MessagesSettings",
    "PreferencesSettings",
    "PresenceSettings",
    "RedisSettings",
    "ServerSettings",
    "SessionSettings",
    "Settings",
    "UserEntry",
    "load_settings",
    "redacted",
]

MASK = "***"
_MODEL_CONFIG = ConfigDict(
    extra="forbid", alias_generator=str.upper, populate_by_name=True, frozen=True
)
# Settings fields that are filled in by load_settings and must never come from YAML.
_NOT_YAML_KEYS = frozenset({"environment", "source"})
# SESSIONHUB_* variables that are not SESSIONHUB_<SECTION>__<KEY> overrides.
_PLAIN_ENV_VARS = ("SESSIONHUB_ENV", "SESSIONHUB_CONFIG", "SESSIONHUB_ADMIN_API_KEYS")
# Not configuration: read by the test suite and scripts (path of a redis-server binary), and
# commonly exported in developers' shells, so it must not make every command fail.
_FOREIGN_ENV_VARS = ("SESSIONHUB_REDIS_SERVER",)
# KEY_PREFIX and its Flask-Session spelling are one setting.
_ALIASED_KEYS: dict[tuple[str | int, ...], tuple[str, ...]] = {
    ("SESSION", "KEY_PREFIX"): ("SESSION", "REDIS_KEY_PREFIX"),
    ("SESSION", "REDIS_KEY_PREFIX"): ("SESSION", "KEY_PREFIX"),
}
_YAML_NULLS = frozenset({"", "~", "null", "Null", "NULL"})
# RFC 6265 cookie-name token: visible ASCII except separators.
_COOKIE_SEPARATORS = frozenset('()<>@,;:\\"/[]?={} \t')


class _FieldError(ValueError):
    """A validation failure that belongs to a key below the validator's own location.

    Model validators can only fail at the model's location; carrying the key path and value lets
    the error message still name e.g. ``SESSION.COOKIE_SAMESITE = 'none'``.
    """

    def __init__(self, path: tuple[str | int, ...], value: object, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.value = value
        self.message = message


def _lowercase(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


# Case-insensitive choices, stored lowercase.
_SameSite = Annotated[Literal["lax", "strict", "none"], BeforeValidator(_lowercase)]
_LogLevel = Annotated[Literal["debug", "info", "warning", "error"], BeforeValidator(_lowercase)]


def _check_printable(value: str, what: str) -> str:
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        raise ValueError(f"must not contain whitespace or control characters ({what})")
    return value


class RedisSettings(BaseModel):
    """Where the Redis server is and how hard to try reaching it."""

    model_config = _MODEL_CONFIG

    host: StrictStr = Field(default="localhost", min_length=1)
    port: StrictInt = Field(default=6379, ge=1, le=65535)
    db: StrictInt = Field(default=0, ge=0)
    username: StrictStr | None = None
    password: SecretStr | None = None
    # Accepted so old Flask-Session configs load; SessionHub always decodes itself.
    decode_responses: StrictBool = True
    url: StrictStr | None = None
    socket_timeout: StrictFloat = Field(default=0.5, gt=0, allow_inf_nan=False)
    connect_timeout: StrictFloat = Field(default=0.5, gt=0, allow_inf_nan=False)
    retries: StrictInt = Field(default=1, ge=0, le=5)
    max_connections: StrictInt = Field(default=64, ge=1)
    probe_interval: StrictFloat = Field(default=5.0, gt=0, allow_inf_nan=False)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    def connection_url(self, *, masked: bool = False) -> str:
        """Return ``url`` if set, else a ``redis://`` URL built from host, port, db and auth.

        ``masked=True`` replaces the password with ``***`` for logging.
        """
        if self.url is not None:
            return _mask_url(self.url) if masked else self.url
        auth = ""
        if self.username is not None or self.password is not None:
            auth = quote(self.username or "", safe="")
            if self.password is not None:
                password = MASK if masked else quote(self.password.get_secret_value(), safe="")
                auth += ":" + password
            auth += "@"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"redis://{auth}{host}:{self.port}/{self.db}"

    def masked_url(self) -> str:
        """``connection_url()`` with the password replaced by ``***``, for logs."""
        return self.connection_url(masked=True)


class SessionSettings(BaseModel):
    """How sessions are stored, keyed, expired and put in cookies."""

    model_config = _MODEL_CONFIG

    type: Literal["redis", "memory"] = "redis"
    permanent: StrictBool = False
    use_signer: StrictBool = True
    key_prefix: StrictStr = Field(default="session:", min_length=1, max_length=64)
    redis_key_prefix: StrictStr | None = Field(default=None, min_length=1, max_length=64)
    cookie_name: StrictStr = Field(default="session", min_length=1)
    cookie_httponly: StrictBool = True
    cookie_secure: StrictBool = False
    cookie_samesite: _SameSite = "lax"
    cookie_domain: StrictStr | None = Field(default=None, min_length=1)
    cookie_path: StrictStr = "/"
    cookie_partitioned: StrictBool = False
    cookie_max_age: StrictInt | None = Field(default=None, ge=1)
    expires: StrictInt = Field(default=7200, ge=1)
    absolute_lifetime: StrictInt = Field(default=604800, ge=1)
    refresh_threshold: StrictInt = Field(default=0, ge=0)
    memory_cleanup_interval: StrictFloat = Field(default=300.0, gt=0, allow_inf_nan=False)
    memory_max_sessions: StrictInt = Field(default=100000, ge=1)
    migrate_on_recovery: StrictBool = True
    index_shards: StrictInt = Field(default=16, ge=1, le=1024)
    max_per_user: StrictInt = Field(default=0, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _apply_redis_key_prefix(cls, data: Any) -> Any:
        # REDIS_KEY_PREFIX is the Flask-Session spelling of KEY_PREFIX; fold it in before field
        # validation so the rest of SessionHub only ever reads key_prefix.
        if not isinstance(data, dict):
            return data
        alias = _get_key(data, "REDIS_KEY_PREFIX")
        if alias is None:
            return data
        current = _get_key(data, "KEY_PREFIX")
        if current is not None and current != alias:
            raise _FieldError(
                ("REDIS_KEY_PREFIX",),
                alias,
                f"conflicts with KEY_PREFIX = {current!r} (REDIS_KEY_PREFIX is an alias of "
                "KEY_PREFIX: give only one, or the same value)",
            )
        merged = {k: v for k, v in data.items() if k not in ("KEY_PREFIX", "key_prefix")}
        merged["KEY_PREFIX"] = alias
        return merged

    @field_validator("key_prefix", "redis_key_prefix")
    @classmethod
    def _check_key_prefix(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not all(" " <= ch <= "~" for ch in value):
            raise ValueError("must contain only printable ASCII characters")
        if "{" in value or "}" in value:
            raise ValueError(
                "must not contain '{' or '}' (SessionHub adds its own Redis hash tags)"
            )
        return value

    @field_validator("cookie_name")
    @classmethod
    def _check_cookie_name(cls, value: str) -> str:
        if not all("!" <= ch <= "~" and ch not in _COOKIE_SEPARATORS for ch in value):
            raise ValueError(
                'must be a cookie token: visible ASCII without spaces or ()<>@,;:\\"/[]?={}'
            )
        return value

    @field_validator("cookie_domain", "cookie_path")
    @classmethod
    def _check_cookie_attribute(cls, value: str | None) -> str | None:
        if value is not None and any(
            ch == ";" or ch.isspace() or not ch.isprintable() for ch in value
        ):
            raise ValueError("must not contain ';', whitespace or control characters")
        return value

    def cookie_attributes(self) -> dict[str, Any]:
        """Keyword arguments of Starlette's and Werkzeug's ``set_cookie``/``delete_cookie``."""
        return {
            "path": self.cookie_path,
            "domain": self.cookie_domain,
            "secure": self.cookie_secure,
            "httponly": self.cookie_httponly,
            "samesite": self.cookie_samesite,
            "partitioned": self.cookie_partitioned,
        }

    @model_validator(mode="after")
    def _check_combinations(self) -> SessionSettings:
        if self.cookie_samesite == "none" and not self.cookie_secure:
            raise _FieldError(
                ("COOKIE_SAMESITE",),
                self.cookie_samesite,
                "requires COOKIE_SECURE: true (browsers reject SameSite=None cookies that are "
                "not Secure)",
            )
        if self.absolute_lifetime < self.expires:
            raise _FieldError(
                ("ABSOLUTE_LIFETIME",),
                self.absolute_lifetime,
                f"must be >= EXPIRES ({self.expires})",
            )
        if self.refresh_threshold >= self.expires:
            raise _FieldError(
                ("REFRESH_THRESHOLD",),
                self.refresh_threshold,
                f"must be < EXPIRES ({self.expires})",
            )
        return self


class ServerSettings(BaseModel):
    """The HTTP service that `sessionhub serve` runs."""

    model_config = _MODEL_CONFIG

    host: StrictStr = Field(default="127.0.0.1", min_length=1)
    port: StrictInt = Field(default=5000, ge=1, le=65535)
    workers: StrictInt = Field(default=1, ge=1, le=64)
    max_body_bytes: StrictInt = Field(default=65536, ge=1, le=16 * 1024 * 1024)
    log_level: _LogLevel = "info"
    # Off by default, as in gunicorn: a log line per request costs more than a session lookup.
    access_log: StrictBool = False


class AdminSettings(BaseModel):
    """Credentials for the admin HTTP API."""

    model_config = _MODEL_CONFIG

    api_keys: tuple[Annotated[SecretStr, Field(min_length=16)], ...] = ()


class PresenceSettings(BaseModel):
    """Who counts as online, and how often activity is written."""

    model_config = _MODEL_CONFIG

    window: StrictInt = Field(default=300, ge=1)
    throttle: StrictInt = Field(default=30, ge=0)
    daily_retention_days: StrictInt = Field(default=90, ge=1)


class MessagesSettings(BaseModel):
    """Per-user inboxes: bounds, body size and the per-sender rate limit."""

    model_config = _MODEL_CONFIG

    max_per_user: StrictInt = Field(default=1000, ge=1)
    retention: StrictInt = Field(default=2592000, ge=1)
    max_body_bytes: StrictInt = Field(default=4096, ge=2, le=1024 * 1024)
    send_rate: StrictInt = Field(default=30, ge=1)
    send_rate_window: StrictInt = Field(default=60, ge=1)
    stream_keepalive: StrictFloat = Field(default=15.0, gt=0, allow_inf_nan=False)


class PreferencesSettings(BaseModel):
    """Limits of the application keys users may keep under ``custom`` in their settings."""

    model_config = _MODEL_CONFIG

    max_custom_bytes: StrictInt = Field(default=8192, ge=2)
    max_custom_keys: StrictInt = Field(default=64, ge=1)


class AuthSettings(BaseModel):
    """Login throttling: failed logins allowed per window, per (username, IP) and per IP."""

    model_config = _MODEL_CONFIG

    max_attempts: StrictInt = Field(default=5, ge=0)
    lockout_seconds: StrictInt = Field(default=300, ge=1)
    max_attempts_per_ip: StrictInt = Field(default=50, ge=0)


class UserEntry(BaseModel):
    """One login account; the password is only ever stored as an argon2 hash."""

    model_config = _MODEL_CONFIG

    username: StrictStr = Field(min_length=1, max_length=128)
    password_hash: SecretStr

    @field_validator("username")
    @classmethod
    def _check_username(cls, value: str) -> str:
        return _check_printable(value, "usernames are typed at a login prompt")

    @field_validator("password_hash")
    @classmethod
    def _check_password_hash(cls, value: SecretStr) -> SecretStr:
        try:
            argon2.extract_parameters(value.get_secret_value())
        except ValueError:
            raise ValueError(
                "must be an argon2 PHC string, e.g. from `sessionhub hash-password`"
            ) from None
        return value


class Settings(BaseModel):
    """Everything SessionHub reads from its config file and environment.

    Each section is a sub-model field with a default factory; adding a section (PRESENCE,
    MESSAGES, ...) is one more such field, and the ``SESSIONHUB_<SECTION>__<KEY>`` overrides
    pick it up automatically.
    """

    model_config = _MODEL_CONFIG

    secret_key: SecretStr | None = Field(default=None, min_length=16)
    # From SESSIONHUB_ENV only; load_settings rejects it as a YAML key.
    environment: Literal["dev", "prod"] = "dev"
    redis: RedisSettings = Field(default_factory=RedisSettings)
    session: SessionSettings = Field(default_factory=SessionSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    admin: AdminSettings = Field(default_factory=AdminSettings)
    presence: PresenceSettings = Field(default_factory=PresenceSettings)
    messages: MessagesSettings = Field(default_factory=MessagesSettings)
    preferences: PreferencesSettings = Field(default_factory=PreferencesSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    users: tuple[UserEntry, ...] = ()
    # The file load_settings read, if any; not a YAML key.
    source: str | None = None

    @field_validator("users")
    @classmethod
    def _check_unique_users(cls, users: tuple[UserEntry, ...]) -> tuple[UserEntry, ...]:
        first_index: dict[str, int] = {}
        for index, user in enumerate(users):
            if user.username in first_index:
                raise _FieldError(
                    (index, "USERNAME"),
                    user.username,
                    f"duplicate username (already used by USERS[{first_index[user.username]}])",
                )
            first_index[user.username] = index
        return users

    @model_validator(mode="after")
    def _check_prod_secret(self) -> Settings:
        if self.environment == "prod" and self.secret_key is None:
            raise ValueError(
                "SECRET_KEY is required when SESSIONHUB_ENV=prod (set it in the config file or "
                "the SECRET_KEY environment variable)"
            )
        return self


# --------------------------------------------------------------------------------------------
# Loading


def load_settings(
    path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """Load the config file (if any), apply environment overrides and validate.

    File choice: ``path`` > ``$SESSIONHUB_CONFIG`` > ``./config-prod.yaml`` when
    ``SESSIONHUB_ENV=prod`` > ``./config.yaml`` > none (all defaults). A named file must exist.
    Raises :class:`ConfigError` with a one-line message on any problem.
    """
    env = os.environ if env is None else env
    environment = _environment(env)
    overrides = _env_overrides(env)

    file_path, required = _choose_file(path, env, environment)
    data: dict[str, Any] = {}
    sources: dict[tuple[str | int, ...], str] = {}
    source: str | None = None
    if required and not file_path.exists():
        named_by = "" if path is not None else " (named by SESSIONHUB_CONFIG)"
        raise ConfigError(f"{file_path}: config file not found{named_by}")
    if required or file_path.is_file():
        data = _read_yaml_file(file_path)
        source = os.path.abspath(file_path)
        sources[()] = str(file_path)

    for key_path, value, var in overrides:
        alias = _ALIASED_KEYS.get(key_path)
        if alias is not None and alias not in sources:
            _set_path(data, alias, None)  # overriding one spelling overrides the file's other one
        _set_path(data, key_path, value)
        sources[key_path] = f"env {var}"

    try:
        return Settings.model_validate({**data, "environment": environment, "source": source})
    except ValidationError as exc:
        raise ConfigError(_format_error(exc.errors()[0], sources)) from None


def redacted(settings: Settings) -> dict[str, Any]:
    """Return the effective config as an UPPERCASE-keyed dict with every secret replaced by ***.

    ENVIRONMENT and SOURCE are left out so the result is itself a loadable config file.
    """
    dumped: dict[str, Any] = _redact(
        settings.model_dump(by_alias=True, exclude=set(_NOT_YAML_KEYS))
    )
    url = dumped["REDIS"]["URL"]
    if url is not None:
        dumped["REDIS"]["URL"] = _mask_url(url)
    return dumped


def _redact(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return MASK
    if isinstance(value, dict):
        return {key: _redact(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact(item) for item in value]
    return value


def _mask_url(url: str) -> str:
    # Same netloc boundaries as urllib/redis-py: userinfo is what precedes the last "@" before
    # the first "/", "?" or "#". A lone userinfo may be a password, so it is masked whole.
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    userinfo, at, hostport = rest[:end].rpartition("@")
    if not at:
        return url
    user, colon, _password = userinfo.partition(":")
    masked = f"{user}:{MASK}" if colon else MASK
    return f"{scheme}://{masked}@{hostport}{rest[end:]}"


def _environment(env: Mapping[str, str]) -> Literal["dev", "prod"]:
    raw = env.get("SESSIONHUB_ENV", "")
    value = raw.strip().lower()
    if value in ("", "dev"):
        return "dev"
    if value == "prod":
        return "prod"
    raise ConfigError(f"env SESSIONHUB_ENV = {raw!r}: must be one of 'dev', 'prod'")


def _choose_file(
    path: str | os.PathLike[str] | None, env: Mapping[str, str], environment: str
) -> tuple[Path, bool]:
    """Return the file to read and whether it must exist."""
    if path is not None:
        return Path(path), True
    if env.get("SESSIONHUB_CONFIG"):
        return Path(env["SESSIONHUB_CONFIG"]), True
    if environment == "prod" and Path("config-prod.yaml").is_file():
        return Path("config-prod.yaml"), False
    return Path("config.yaml"), False


def _read_yaml_file(path: Path) -> dict[str, Any]:
    label = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{label}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{label}: cannot read config file: {exc.strerror}") from None
    try:
        data = _parse_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{label}{_yaml_problem(exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{label}: top level must be a mapping of sections "
            f"({', '.join(_allowed_keys(Settings))}), got {_kind(data)}"
        )
    for key in data:
        if isinstance(key, str) and key.lower() in _NOT_YAML_KEYS:
            hint = "set SESSIONHUB_ENV instead; " if key.lower() == "environment" else ""
            raise ConfigError(
                f"{label}: {key}: unknown key ({hint}allowed: {', '.join(_allowed_keys(Settings))})"
            )
    # An empty section (all its keys commented out) means "use the defaults".
    return {key: value for key, value in data.items() if value is not None}


def _env_overrides(env: Mapping[str, str]) -> list[tuple[tuple[str, ...], Any, str]]:
    """Return (key path, value, variable name) for every override, in the order to apply."""
    overrides: list[tuple[tuple[str, ...], Any, str]] = []
    # Secrets and hosts are taken verbatim: YAML would turn "null", "yes" or "#x" into non-strings.
    for var, key_path in (
        ("REDIS_HOST", ("REDIS", "HOST")),
        ("REDIS_PASSWORD", ("REDIS", "PASSWORD")),
        ("REDIS_URL", ("REDIS", "URL")),
        ("SECRET_KEY", ("SECRET_KEY",)),
    ):
        if env.get(var):
            overrides.append((key_path, env[var], var))
    for var, key_path in (("REDIS_PORT", ("REDIS", "PORT")), ("REDIS_DB", ("REDIS", "DB"))):
        if env.get(var):
            overrides.append((key_path, _parse_env_yaml(var, env[var], secret=False), var))
    api_keys = [k.strip() for k in env.get("SESSIONHUB_ADMIN_API_KEYS", "").split(",")]
    if any(api_keys):
        overrides.append(
            (("ADMIN", "API_KEYS"), [k for k in api_keys if k], "SESSIONHUB_ADMIN_API_KEYS")
        )

    # Namespaced variables come last so they win over the legacy names above.
    sections = _section_models()
    for var in sorted(env):
        if not var.startswith("SESSIONHUB_") or var in _PLAIN_ENV_VARS + _FOREIGN_ENV_VARS:
            continue
        section, sep, key = var.removeprefix("SESSIONHUB_").partition("__")
        if not sep or not section or not key:
            raise ConfigError(
                f"env {var}: unknown variable (expected SESSIONHUB_<SECTION>__<KEY> or one of "
                f"{', '.join(_PLAIN_ENV_VARS)})"
            )
        model = sections.get(section)
        if model is None:
            raise ConfigError(
                f"env {var}: unknown section {section} "
                f"({_suggest(section, sections)}allowed: {', '.join(sorted(sections))})"
            )
        field = _field_for_key(model, key)
        if field is None:
            raise ConfigError(
                f"env {var}: unknown key {section}.{key} "
                f"({_suggest(key, _allowed_keys(model))}allowed: {', '.join(_allowed_keys(model))})"
            )
        overrides.append(((section, key), _parse_env_value(var, env[var], field), var))
    return overrides


def _parse_env_value(var: str, raw: str, field: FieldInfo) -> Any:
    core, _meta, nullable = _unwrap(field.annotation, [])
    if core in (str, SecretStr):
        return None if nullable and raw.strip() in _YAML_NULLS else raw
    return _parse_env_yaml(var, raw, secret=_is_secret_leaf(field.annotation))


def _parse_env_yaml(var: str, raw: str, *, secret: bool) -> Any:
    try:
        return _parse_yaml(raw)
    except yaml.YAMLError as exc:
        shown = repr(MASK) if secret else repr(raw)
        raise ConfigError(f"env {var} = {shown}{_yaml_problem(exc, with_line=False)}") from None


def _set_path(data: dict[str, Any], key_path: tuple[str, ...], value: Any) -> None:
    node = data
    for key in key_path[:-1]:
        child = _pop_key(node, key)
        if child is None:
            child = {}
        node[key] = child
        if not isinstance(child, dict):
            return  # keep the file's non-mapping section so validation reports it
        node = child
    _pop_key(node, key_path[-1])
    node[key_path[-1]] = value


def _pop_key(node: dict[str, Any], key: str) -> Any:
    # populate_by_name lets YAML spell a key in lowercase too; an override replaces either.
    value = node.pop(key.lower(), None)
    return node.pop(key, value)


def _get_key(data: dict[str, Any], key: str) -> Any:
    return data.get(key, data.get(key.lower()))


# --------------------------------------------------------------------------------------------
# YAML


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate mapping keys instead of keeping the last one."""


def _construct_unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _value_node in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # "<<" merges may be overridden by explicit keys
        key = loader.construct_object(key_node, deep=True)
        if isinstance(key, Hashable):
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen.add(key)
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_unique_mapping,
)


def _parse_yaml(text: str) -> Any:
    loader = _StrictLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _yaml_problem(exc: yaml.YAMLError, *, with_line: bool = True) -> str:
    """Return ' line N: invalid YAML: problem' (or ': invalid YAML: ...') for exc."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f" line {mark.line + 1}" if mark is not None and with_line else ""
        problem = exc.problem or exc.context or "syntax error"
        return f"{where}: invalid YAML: {' '.join(problem.split())}"
    return f": invalid YAML: {' '.join(str(exc).split())}"


# --------------------------------------------------------------------------------------------
# Turning a pydantic error into one readable line


def _format_error(error: Mapping[str, Any], sources: Mapping[tuple[str | int, ...], str]) -> str:
    loc: tuple[str | int, ...] = tuple(
        part.upper() if isinstance(part, str) else part for part in error["loc"]
    )
    kind: str = error["type"]
    value: Any = error.get("input")
    cause = error.get("ctx", {}).get("error")
    show_value = True

    if isinstance(cause, _FieldError):
        loc += cause.path
        value = cause.value
        message = cause.message
    elif kind in ("extra_forbidden", "invalid_key"):
        loc = (*loc[:-1], str(loc[-1]))  # a non-string YAML key (e.g. 1:) is still a key here
        parent = _resolve(loc[:-1])
        allowed = _allowed_keys(parent.model) if parent and parent.model else []
        message = f"unknown key ({_suggest(str(loc[-1]), allowed)}allowed: {', '.join(allowed)})"
        show_value = False  # a mistyped key may well hold a password
    elif kind == "missing":
        message = "is required"
        show_value = False
    elif isinstance(cause, Exception):
        message = str(cause)
    else:
        target = _resolve(loc)
        message = f"must be {_describe(target.annotation, target.metadata)}" if target else ""
        message = message or str(error["msg"])

    where = _loc_text(loc)
    if not where:
        return message
    shown = f" = {_show(value, loc)}" if show_value else ""
    line = f"{where}{shown}: {message}"
    for n in range(len(loc), -1, -1):
        if loc[:n] in sources:
            return f"{sources[loc[:n]]}: {line}"
    return line


class _Target:
    """What a location in the config points at: its type, constraints and owning model."""

    def __init__(
        self, annotation: Any, metadata: list[Any], model: type[BaseModel] | None = None
    ) -> None:
        self.annotation = annotation
        self.metadata = metadata
        self.model = model


def _resolve(loc: tuple[str | int, ...]) -> _Target | None:
    """Follow loc from Settings through sub-models and tuples; None if it is not a known key."""
    annotation: Any = Settings
    metadata: list[Any] = []
    for part in loc:
        core, metadata, _nullable = _unwrap(annotation, metadata)
        if isinstance(part, str) and _is_model(core):
            field = _field_for_key(core, part)
            if field is None:
                return None
            annotation, metadata = field.annotation, list(field.metadata)
        elif isinstance(part, int) and get_origin(core) is tuple:
            annotation, metadata = get_args(core)[0], []
        else:
            return None
    core, metadata, _nullable = _unwrap(annotation, metadata)
    return _Target(annotation, metadata, core if _is_model(core) else None)


def _loc_text(loc: tuple[str | int, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else part
    return text


def _show(value: Any, loc: tuple[str | int, ...]) -> str:
    target = _resolve(loc)
    if value is None:
        return "null"
    # Anything that is, or may contain, a secret is masked even when it has the wrong shape:
    # `USERS: [<hash>]` must not echo the hash.
    if isinstance(value, SecretStr) or (target is not None and _has_secret(target.annotation)):
        if isinstance(value, dict):
            return "{...}"
        return "[...]" if isinstance(value, (list, tuple)) else repr(MASK)
    if loc == ("REDIS", "URL") and isinstance(value, str):
        value = _mask_url(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _describe(annotation: Any, metadata: list[Any]) -> str:
    core, meta, nullable = _unwrap(annotation, metadata)
    if core is bool:
        text = "true or false"
    elif get_origin(core) is Literal:
        text = "one of " + ", ".join(repr(choice) for choice in get_args(core))
    elif core is int:
        text = "an integer" + _bounds(meta)
    elif core is float:
        finite = any(getattr(m, "allow_inf_nan", True) is False for m in meta)
        text = ("a finite number" if finite else "a number") + _bounds(meta)
    elif core in (str, SecretStr):
        text = "a string" + _lengths(meta)
    elif get_origin(core) is tuple:
        text = f"a list (each item: {_describe(get_args(core)[0], [])})"
    elif _is_model(core):
        text = f"a mapping (allowed keys: {', '.join(_allowed_keys(core))})"
    else:
        text = str(core)
    return f"{text} or null" if nullable else text


def _bounds(meta: list[Any]) -> str:
    limits = {
        attr: getattr(m, attr)
        for m in meta
        for attr in ("ge", "gt", "le", "lt")
        if getattr(m, attr, None) is not None
    }
    if "ge" in limits and "le" in limits and len(limits) == 2:
        return f" from {limits['ge']} to {limits['le']}"
    symbols = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
    return "".join(f" {symbols[attr]} {limit}" for attr, limit in limits.items())


def _lengths(meta: list[Any]) -> str:
    low = next((m.min_length for m in meta if getattr(m, "min_length", None) is not None), None)
    high = next((m.max_length for m in meta if getattr(m, "max_length", None) is not None), None)
    if low is not None and high is not None:
        return f" of {low} to {high} characters"
    if high is not None:
        return f" of at most {high} characters"
    if low == 1:
        return " (not empty)"
    if low is not None:
        return f" of at least {low} characters"
    return ""


def _unwrap(annotation: Any, metadata: list[Any]) -> tuple[Any, list[Any], bool]:
    """Strip Optional and Annotated; return (bare type, collected constraints, nullable)."""
    meta = list(metadata)
    nullable = False
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation, *extra = get_args(annotation)
            for item in extra:
                meta.extend(item.metadata if isinstance(item, FieldInfo) else [item])
        elif origin in (Union, types.UnionType):
            members = [arg for arg in get_args(annotation) if arg is not type(None)]
            nullable = nullable or len(members) < len(get_args(annotation))
            if len(members) != 1:
                return annotation, meta, nullable
            annotation = members[0]
        else:
            return annotation, meta, nullable


def _is_model(annotation: object) -> TypeGuard[type[BaseModel]]:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _is_secret_leaf(annotation: Any) -> bool:
    core, _meta, _nullable = _unwrap(annotation, [])
    if get_origin(core) is tuple:
        return _is_secret_leaf(get_args(core)[0])
    return core is SecretStr


def _has_secret(annotation: Any) -> bool:
    core, _meta, _nullable = _unwrap(annotation, [])
    if _is_model(core):
        return any(_has_secret(field.annotation) for field in core.model_fields.values())
    if get_origin(core) is tuple:
        return _has_secret(get_args(core)[0])
    return core is SecretStr


def _field_for_key(model: type[BaseModel], key: str) -> FieldInfo | None:
    for name, field in model.model_fields.items():
        if model is Settings and name in _NOT_YAML_KEYS:
            continue
        if key == (field.alias or name.upper()):
            return field
    return None


def _allowed_keys(model: type[BaseModel]) -> list[str]:
    return sorted(
        field.alias or name.upper()
        for name, field in model.model_fields.items()
        if not (model is Settings and name in _NOT_YAML_KEYS)
    )


def _section_models() -> dict[str, type[BaseModel]]:
    sections: dict[str, type[BaseModel]] = {}
    for name, field in Settings.model_fields.items():
        if _is_model(field.annotation):
            sections[field.alias or name.upper()] = field.annotation
    return sections


def _suggest(key: str, allowed: list[str] | dict[str, Any]) -> str:
    close = difflib.get_close_matches(key, list(allowed), n=1)
    return f"did you mean {close[0]}? " if close else ""


def _kind(value: object) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return f"a {type(value).__name__}"
