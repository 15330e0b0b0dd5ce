"""SessionHub settings: a YAML file with UPPERCASE keys, overridden by environment variables.

:func:`load_settings` is the only way the application should build :class:`Settings`; it turns
every problem into a one-line :class:`~sessionhub.exceptions.ConfigError` that names where the
value came from (the file or the variable), the key, the value (secrets masked) and what is
allowed. The models are the one description of the keys: how a variable's text is read, what a
message says a key allows and what is masked all follow from their types and bounds.
``docs/CONFIG.md`` lists every key.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
from collections.abc import Callable, Hashable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote

import yaml
from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SecretStr,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import ErrorDetails, PydanticUseDefault

from sessionhub.exceptions import ConfigError
from sessionhub.valuecodec import parse_key

__all__ = [
    "AdminSettings",
    "AuthSettings",
    "EncryptionKey",
    "EncryptionSettings",
    "EventsSettings",
    "LogSettings",
    "MessagesSettings",
    "MetricsSettings",
    "PreferencesSettings",
    "PresenceSettings",
    "RedisSettings",
    "ServerSettings",
    "SessionSettings",
    "Settings",
    "TracingSettings",
    "UserEntry",
    "load_settings",
    "redacted",
]

MASK = "***"
# RFC 6265 cookie-name token: visible ASCII except separators.
_COOKIE_SEPARATORS = frozenset('()<>@,;:\\"/[]?={} \t')
# What argon2's encoder writes (v= is absent from Argon2 v1.2 hashes); checked without argon2,
# which only the service needs.
_ARGON2_PHC = re.compile(
    r"\$argon2(?:id|i|d)(?:\$v=[0-9]+)?\$m=[0-9]+,t=[0-9]+,p=[0-9]+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+"
)


class _Section(BaseModel):
    """A mapping of the file: UPPERCASE keys (lowercase accepted), no unknown keys, frozen."""

    model_config = ConfigDict(
        extra="forbid", alias_generator=str.upper, populate_by_name=True, frozen=True
    )


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


def _check(ok: Callable[[Any], object], message: str) -> AfterValidator:
    """A validator that refuses, with ``message``, a value for which ``ok`` is false."""

    def check(value: Any) -> Any:
        if not ok(value):
            raise ValueError(message)
        return value

    return AfterValidator(check)


def _unique(attribute: str, what: str, key: str) -> AfterValidator:
    """A validator that refuses a list in which two items have the same ``attribute``."""

    def check(items: tuple[Any, ...]) -> tuple[Any, ...]:
        first: dict[object, int] = {}
        for index, item in enumerate(items):
            value = getattr(item, attribute)
            if value in first:
                where = f"already used by {key}[{first[value]}]"
                raise _FieldError((index, attribute.upper()), value, f"duplicate {what} ({where})")
            first[value] = index
        return items

    return AfterValidator(check)


def _starts_with(*prefixes: str) -> AfterValidator:
    allowed = ", ".join(prefixes[:-1]) + " or " + prefixes[-1]
    return _check(lambda value: value.startswith(prefixes), f"must start with {allowed}")


def _lowercase(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


def _host_port_list(value: object) -> object:
    # An environment variable gives "a:1,b:2" as one string; YAML gives a list.
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _is_host_port(value: str) -> bool:
    host, sep, port = value.rpartition(":")
    return bool(sep and host and port.isdigit() and 1 <= int(port) <= 65535)


def host_port(value: str) -> tuple[str, int]:
    """``("host", port)`` of a validated ``host:port`` (IPv6 hosts in brackets or bare)."""
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


# Case-insensitive choices, stored lowercase.
_SameSite = Annotated[Literal["lax", "strict", "none"], BeforeValidator(_lowercase)]
_LogLevel = Annotated[Literal["debug", "info", "warning", "error"], BeforeValidator(_lowercase)]
_RedisMode = Annotated[Literal["standalone", "sentinel", "cluster"], BeforeValidator(_lowercase)]
_LogFormat = Annotated[Literal["text", "json"], BeforeValidator(_lowercase)]
# Every float key is a duration; error messages call numbers "finite" on the strength of this.
_Seconds = Annotated[StrictFloat, Field(gt=0, allow_inf_nan=False)]
# Shown as *** by redacted(); error messages mask it by its schema (writeOnly).
_Secret = Annotated[SecretStr, PlainSerializer(lambda _secret: MASK, when_used="json")]
_HostPorts = Annotated[
    tuple[
        Annotated[
            StrictStr, _check(_is_host_port, "must be host:port with a port from 1 to 65535")
        ],
        ...,
    ],
    BeforeValidator(_host_port_list),
]


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


_RedisUrl = Annotated[
    StrictStr,
    _starts_with("redis://", "rediss://", "unix://"),
    PlainSerializer(_mask_url, when_used="json"),  # redacted() shows it without its password
]


class RedisSettings(_Section):
    """Where the Redis server is and how hard to try reaching it."""

    host: StrictStr = Field(default="localhost", min_length=1)
    port: StrictInt = Field(default=6379, ge=1, le=65535)
    db: StrictInt = Field(default=0, ge=0)
    username: StrictStr | None = None
    password: _Secret | None = None
    # Accepted so old Flask-Session configs load; SessionHub always decodes itself.
    decode_responses: StrictBool = True
    url: _RedisUrl | None = None
    socket_timeout: _Seconds = 0.5
    connect_timeout: _Seconds = 0.5
    retries: StrictInt = Field(default=1, ge=0, le=5)
    max_connections: StrictInt = Field(default=64, ge=1)
    probe_interval: _Seconds = 5.0
    embedded: Literal["auto", "never"] = "auto"
    # Topology: one server, a master found through Sentinel, or a Redis Cluster.
    mode: _RedisMode = "standalone"
    sentinels: _HostPorts = ()
    sentinel_master: StrictStr | None = Field(default=None, min_length=1)
    sentinel_username: StrictStr | None = None
    sentinel_password: _Secret | None = None
    cluster_nodes: _HostPorts = ()
    wait_replicas: StrictInt = Field(default=0, ge=0, le=16)
    tls: StrictBool = False
    sentinel_tls: StrictBool | None = None
    tls_ca_cert: StrictStr | None = Field(default=None, min_length=1)
    tls_cert: StrictStr | None = Field(default=None, min_length=1)
    tls_key: StrictStr | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _check_topology(self) -> RedisSettings:
        if self.mode == "sentinel" and self.sentinels and self.sentinel_master is None:
            raise _FieldError(
                ("SENTINEL_MASTER",),
                None,
                "is required with MODE: sentinel (the name the sentinels monitor)",
            )
        for mode, key, what in (
            ("sentinel", "SENTINELS", "host:port"),
            ("cluster", "CLUSTER_NODES", "host:port startup node"),
        ):
            nodes = list(getattr(self, key.lower()))
            if self.mode == mode and not nodes:
                raise _FieldError((key,), nodes, f"must list at least one {what} with MODE: {mode}")
            if self.mode != mode and nodes:
                raise _FieldError((key,), nodes, f"is only used with MODE: {mode}")
        if self.mode != "standalone" and self.url is not None:
            nodes_key = "SENTINELS" if self.mode == "sentinel" else "CLUSTER_NODES"
            raise _FieldError(
                ("URL",),
                _mask_url(self.url),
                f"names one server, which MODE: {self.mode} does not use (give {nodes_key}, and "
                "USERNAME / PASSWORD / TLS for the data nodes)",
            )
        if self.sentinel_tls is not None and self.mode != "sentinel":
            raise _FieldError(
                ("SENTINEL_TLS",),
                self.sentinel_tls,
                "is only used with MODE: sentinel (TLS covers every node of the other modes)",
            )
        if (self.tls_cert is None) != (self.tls_key is None):
            raise _FieldError(
                ("TLS_CERT" if self.tls_key is None else "TLS_KEY",),
                self.tls_cert or self.tls_key,
                "TLS_CERT and TLS_KEY go together (a client certificate and its key)",
            )
        return self

    @property
    def uses_tls(self) -> bool:
        """Whether connections to the data nodes use TLS."""
        return self.tls or (self.url is not None and self.url.startswith("rediss://"))

    @property
    def sentinel_uses_tls(self) -> bool:
        """Whether connections to the sentinels use TLS: ``SENTINEL_TLS``, else as the data
        nodes."""
        return self.uses_tls if self.sentinel_tls is None else self.sentinel_tls

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
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{auth}{host}:{self.port}/{self.db}"

    def masked_url(self) -> str:
        """``connection_url()`` with the password replaced by ``***``, for logs."""
        return self.connection_url(masked=True)


DEFAULT_REFRESH_THRESHOLD = 60
"""Seconds: the idle timeout is extended at most once per minute, so reads in between need no
Redis round trip (the local cache answers them)."""


def _use_default_for_null(value: Any) -> Any:
    # The config example spells out REDIS_KEY_PREFIX: null; with KEY_PREFIX left out that must
    # still mean the default rather than a null prefix.
    if value is None:
        raise PydanticUseDefault
    return value


_KeyPrefix = Annotated[
    StrictStr,
    Field(min_length=1, max_length=64),
    _check(
        lambda value: all(" " <= ch <= "~" for ch in value),
        "must contain only printable ASCII characters",
    ),
    _check(
        lambda value: "{" not in value and "}" not in value,
        "must not contain '{' or '}' (SessionHub adds its own Redis hash tags)",
    ),
]
_CookieAttribute = _check(
    lambda value: not any(ch == ";" or ch.isspace() or not ch.isprintable() for ch in value),
    "must not contain ';', whitespace or control characters",
)


class SessionSettings(_Section):
    """How sessions are stored, keyed, expired and put in cookies."""

    type: Literal["redis", "memory"] = "redis"
    permanent: StrictBool = False
    use_signer: StrictBool = True
    key_prefix: Annotated[_KeyPrefix, BeforeValidator(_use_default_for_null)] = Field(
        default="session:",
        validation_alias=AliasChoices("KEY_PREFIX", "REDIS_KEY_PREFIX", "redis_key_prefix"),
    )
    redis_key_prefix: _KeyPrefix | None = None
    cookie_name: Annotated[
        StrictStr,
        Field(min_length=1),
        _check(
            lambda value: all("!" <= ch <= "~" and ch not in _COOKIE_SEPARATORS for ch in value),
            'must be a cookie token: visible ASCII without spaces or ()<>@,;:\\"/[]?={}',
        ),
    ] = "session"
    cookie_httponly: StrictBool = True
    cookie_secure: StrictBool = False
    cookie_samesite: _SameSite = "lax"
    cookie_domain: Annotated[StrictStr, Field(min_length=1), _CookieAttribute] | None = None
    cookie_path: Annotated[StrictStr, _CookieAttribute] = "/"
    cookie_partitioned: StrictBool = False
    cookie_max_age: StrictInt | None = Field(default=None, ge=1)
    expires: StrictInt = Field(default=7200, ge=1)
    absolute_lifetime: StrictInt = Field(default=604800, ge=1)
    remember_expires: StrictInt = Field(default=1209600, ge=1)
    remember_absolute_lifetime: StrictInt = Field(default=2592000, ge=1)
    refresh_threshold: StrictInt = Field(default=DEFAULT_REFRESH_THRESHOLD, ge=0)
    memory_cleanup_interval: _Seconds = 300.0
    memory_max_sessions: StrictInt = Field(default=100000, ge=1)
    local_cache_size: StrictInt = Field(default=100000, ge=0)
    migrate_on_recovery: StrictBool = True
    index_shards: StrictInt = Field(default=16, ge=1, le=1024)
    max_per_user: StrictInt = Field(default=0, ge=0)
    compress_threshold: StrictInt = Field(default=1024, ge=0)
    max_bytes: StrictInt = Field(default=1048576, ge=0)

    @field_validator("redis_key_prefix")
    @classmethod
    def _check_same_prefix(cls, value: str | None, info: ValidationInfo) -> str | None:
        # key_prefix was read from KEY_PREFIX if given, so a different value here is a conflict.
        current = info.data.get("key_prefix")
        if value is not None and current is not None and value != current:
            raise ValueError(
                f"conflicts with KEY_PREFIX = {current!r} (REDIS_KEY_PREFIX is an alias of "
                "KEY_PREFIX: give only one, or the same value)"
            )
        return value

    def cookie_attributes(self) -> dict[str, Any]:
        """Keyword arguments of Starlette's and Werkzeug's ``set_cookie``/``delete_cookie``."""
        attributes: dict[str, Any] = {
            "path": self.cookie_path,
            "domain": self.cookie_domain,
            "secure": self.cookie_secure,
            "httponly": self.cookie_httponly,
            "samesite": self.cookie_samesite,
        }
        if self.cookie_partitioned:  # only then: Werkzeug before 3.0 lacks the argument
            attributes["partitioned"] = True
        return attributes

    def _check_cookie_prefix(self) -> None:
        """Browsers drop a ``__Host-`` or ``__Secure-`` cookie that breaks its prefix's rules,
        which would log everyone out silently: refuse such settings at start instead."""
        name = self.cookie_name
        rules: list[tuple[bool, str, object, str]] = []
        if name.startswith(("__Host-", "__Secure-")) or self.cookie_partitioned:
            rules.append((self.cookie_secure, "COOKIE_SECURE", self.cookie_secure, "true"))
        if name.startswith("__Host-"):
            rules.append((self.cookie_path == "/", "COOKIE_PATH", self.cookie_path, "/"))
            rules.append((self.cookie_domain is None, "COOKIE_DOMAIN", self.cookie_domain, "null"))
        for ok, key, value, needed in rules:
            if not ok:
                why = "a Partitioned cookie" if not name.startswith("__") else f"the name {name!r}"
                raise _FieldError((key,), value, f"must be {needed} for {why} (browsers refuse it)")

    @model_validator(mode="after")
    def _check_combinations(self) -> SessionSettings:
        self._check_cookie_prefix()
        if self.cookie_samesite == "none" and not self.cookie_secure:
            raise _FieldError(
                ("COOKIE_SAMESITE",),
                self.cookie_samesite,
                "requires COOKIE_SECURE: true (browsers reject SameSite=None cookies that are "
                "not Secure)",
            )
        if "refresh_threshold" not in self.model_fields_set:
            # The default must not refuse a short EXPIRES: then the idle timeout is extended at
            # most once per half of it.
            default = min(DEFAULT_REFRESH_THRESHOLD, self.expires // 2)
            object.__setattr__(self, "refresh_threshold", default)
        for key, relation, other in (
            ("ABSOLUTE_LIFETIME", ">=", "EXPIRES"),
            ("REFRESH_THRESHOLD", "<", "EXPIRES"),
            ("REMEMBER_ABSOLUTE_LIFETIME", ">=", "REMEMBER_EXPIRES"),
            ("REFRESH_THRESHOLD", "<", "REMEMBER_EXPIRES"),
        ):
            value, bound = getattr(self, key.lower()), getattr(self, other.lower())
            if not (value >= bound if relation == ">=" else value < bound):
                raise _FieldError((key,), value, f"must be {relation} {other} ({bound})")
        return self


class ServerSettings(_Section):
    """The HTTP service that `sessionhub serve` runs."""

    host: StrictStr = Field(default="127.0.0.1", min_length=1)
    port: StrictInt = Field(default=5000, ge=1, le=65535)
    workers: StrictInt = Field(default=1, ge=1, le=64)
    max_body_bytes: StrictInt = Field(default=65536, ge=1, le=16 * 1024 * 1024)
    log_level: _LogLevel = "info"
    # Off by default, as in gunicorn: a log line per request costs more than a session lookup.
    access_log: StrictBool = False


class AdminSettings(_Section):
    """Credentials for the admin HTTP API."""

    api_keys: tuple[Annotated[_Secret, Field(min_length=16)], ...] = ()


class PresenceSettings(_Section):
    """Who counts as online, and how often activity is written."""

    window: StrictInt = Field(default=300, ge=1)
    throttle: StrictInt = Field(default=30, ge=0)
    daily_retention_days: StrictInt = Field(default=90, ge=1)


class MessagesSettings(_Section):
    """Per-user inboxes: bounds, body size and the per-sender rate limit."""

    max_per_user: StrictInt = Field(default=1000, ge=1)
    retention: StrictInt = Field(default=2592000, ge=1)
    max_body_bytes: StrictInt = Field(default=4096, ge=2, le=1024 * 1024)
    send_rate: StrictInt = Field(default=30, ge=1)
    send_rate_window: StrictInt = Field(default=60, ge=1)
    stream_keepalive: _Seconds = 15.0


class PreferencesSettings(_Section):
    """Limits of the application keys users may keep under ``custom`` in their settings."""

    max_custom_bytes: StrictInt = Field(default=8192, ge=2)
    max_custom_keys: StrictInt = Field(default=64, ge=1)


class AuthSettings(_Section):
    """Login throttling (failed logins allowed per window, per (username, IP) and per IP), and
    re-authentication: the authentication levels, weakest first, and how recent a login the
    service's session-ending endpoints need."""

    max_attempts: StrictInt = Field(default=5, ge=0)
    lockout_seconds: StrictInt = Field(default=300, ge=1)
    max_attempts_per_ip: StrictInt = Field(default=50, ge=0)
    levels: tuple[Annotated[StrictStr, Field(min_length=1, max_length=32)], ...] = Field(
        default=("password", "mfa"), min_length=1
    )
    reauth_max_age: StrictInt = Field(default=900, ge=1)


class EncryptionKey(_Section):
    """One data-encryption key: a short id stored with each value, and 32 bytes in base64."""

    id: StrictStr = Field(min_length=1, max_length=16, pattern=r"^[A-Za-z0-9_-]+$")
    key: _Secret

    @field_validator("key")
    @classmethod
    def _check_key(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        parse_key(str(info.data.get("id", "")), value.get_secret_value())
        return value


class EncryptionSettings(_Section):
    """Encryption at rest: the first key encrypts new values, every key listed decrypts."""

    keys: Annotated[tuple[EncryptionKey, ...], _unique("id", "key id", "KEYS")] = ()


class EventsSettings(_Section):
    """Session events: where expiries come from, the subscriber queue and the webhook."""

    enable_keyspace_notifications: StrictBool = False
    queue_size: StrictInt = Field(default=10000, ge=1)
    webhook_url: Annotated[StrictStr, _starts_with("http://", "https://")] | None = None
    webhook_secret: _Secret | None = Field(default=None, min_length=16)
    webhook_timeout: _Seconds = 5.0
    webhook_max_attempts: StrictInt = Field(default=5, ge=1, le=20)
    webhook_backoff: _Seconds = 0.5
    webhook_queue_size: StrictInt = Field(default=1000, ge=1)

    @model_validator(mode="after")
    def _check_webhook_secret(self) -> EventsSettings:
        if self.webhook_url is not None and self.webhook_secret is None:
            raise _FieldError(
                ("WEBHOOK_SECRET",),
                None,
                "is required with WEBHOOK_URL (receivers check each body's signature with it)",
            )
        return self


class MetricsSettings(_Section):
    """``GET /metrics`` (Prometheus) and the background reading of Redis's own figures."""

    enabled: StrictBool = True
    require_auth: StrictBool = False
    refresh_interval: _Seconds = 5.0


class TracingSettings(_Section):
    """OpenTelemetry spans, exported over OTLP to the endpoint the ``OTEL_*`` variables name."""

    enabled: StrictBool = False


class LogSettings(_Section):
    """How the service writes its log lines."""

    format: _LogFormat = "text"


class UserEntry(_Section):
    """One login account; the password is only ever stored as an argon2 hash."""

    username: Annotated[
        StrictStr,
        Field(min_length=1, max_length=128),
        _check(
            lambda value: not any(ch.isspace() or not ch.isprintable() for ch in value),
            "must not contain whitespace or control characters "
            "(usernames are typed at a login prompt)",
        ),
    ]
    password_hash: Annotated[
        _Secret,
        _check(
            lambda value: _ARGON2_PHC.fullmatch(value.get_secret_value()),
            "must be an argon2 PHC string, e.g. from `sessionhub hash-password`",
        ),
    ]


class Settings(_Section):
    """Everything SessionHub reads from its config file and environment.

    Each section is a sub-model field with a default factory; adding a section (PRESENCE,
    MESSAGES, ...) is one more such field, and the ``SESSIONHUB_<SECTION>__<KEY>`` overrides
    pick it up automatically.
    """

    secret_key: _Secret | None = Field(default=None, min_length=16)
    # Former SECRET_KEYs, newest first: their cookies and storage ids are still accepted, and a
    # session found under one moves to SECRET_KEY on its next use.
    secret_key_fallbacks: tuple[Annotated[_Secret, Field(min_length=16)], ...] = ()
    # From SESSIONHUB_ENV only; load_settings rejects it as a YAML key. Not in the JSON schema,
    # which describes what the file may contain.
    environment: SkipJsonSchema[Literal["dev", "prod"]] = "dev"
    redis: RedisSettings = Field(default_factory=RedisSettings)
    session: SessionSettings = Field(default_factory=SessionSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    admin: AdminSettings = Field(default_factory=AdminSettings)
    presence: PresenceSettings = Field(default_factory=PresenceSettings)
    messages: MessagesSettings = Field(default_factory=MessagesSettings)
    preferences: PreferencesSettings = Field(default_factory=PreferencesSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    encryption: EncryptionSettings = Field(default_factory=EncryptionSettings)
    events: EventsSettings = Field(default_factory=EventsSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    tracing: TracingSettings = Field(default_factory=TracingSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    users: Annotated[tuple[UserEntry, ...], _unique("username", "username", "USERS")] = ()
    # The file load_settings read, if any; not a YAML key.
    source: SkipJsonSchema[str | None] = None

    @model_validator(mode="after")
    def _check_prod_secret(self) -> Settings:
        if self.environment == "prod" and self.secret_key is None:
            raise ValueError(
                "SECRET_KEY is required when SESSIONHUB_ENV=prod (set it in the config file or "
                "the SECRET_KEY environment variable)"
            )
        if self.secret_key_fallbacks and self.secret_key is None:
            raise _FieldError(
                ("SECRET_KEY_FALLBACKS",),
                self.secret_key_fallbacks,
                "needs SECRET_KEY (the key that replaces them)",
            )
        return self


def redacted(settings: Settings) -> dict[str, Any]:
    """Return the effective config as an UPPERCASE-keyed dict with every secret (and the password
    in REDIS.URL) replaced by ***.

    ENVIRONMENT and SOURCE are left out so the result is itself a loadable config file.
    """
    return settings.model_dump(mode="json", by_alias=True, exclude={"environment", "source"})


# --------------------------------------------------------------------------------------------
# Loading. Not pydantic-settings: its sources read ``os.environ`` only (``load_settings`` takes
# the environment as an argument), hand strings or JSON to fields that here take YAML scalars and
# are strict, ignore misspelt ``SESSIONHUB_`` variables, and cannot say which variable a value
# came from, which every error message names.

# The seed's variable names. Unlike SESSIONHUB_<SECTION>__<KEY>, empty means unset and strings
# are taken verbatim even when they read "null": a password may well be "null".
_SEED_ENV_VARS: dict[str, tuple[str, ...]] = {
    "REDIS_HOST": ("REDIS", "HOST"),
    "REDIS_PORT": ("REDIS", "PORT"),
    "REDIS_DB": ("REDIS", "DB"),
    "REDIS_PASSWORD": ("REDIS", "PASSWORD"),
    "REDIS_URL": ("REDIS", "URL"),
    "SECRET_KEY": ("SECRET_KEY",),
    "SECRET_KEY_FALLBACKS": ("SECRET_KEY_FALLBACKS",),
}
# SESSIONHUB_* variables that are not SESSIONHUB_<SECTION>__<KEY> overrides.
_PLAIN_ENV_VARS = ("SESSIONHUB_ENV", "SESSIONHUB_CONFIG", "SESSIONHUB_ADMIN_API_KEYS")
# Not configuration: read by the test suite and scripts (path of a redis-server binary), and
# commonly exported in developers' shells, so it must not make every command fail.
_FOREIGN_ENV_VARS = ("SESSIONHUB_REDIS_SERVER", "SESSIONHUB_DEFAULT_REDIS_PORT")
# KEY_PREFIX and its Flask-Session spelling are one setting: an override replaces both.
_OTHER_SPELLING: dict[tuple[str, ...], str] = {
    ("SESSION", "KEY_PREFIX"): "REDIS_KEY_PREFIX",
    ("SESSION", "REDIS_KEY_PREFIX"): "KEY_PREFIX",
}
_YAML_NULLS = frozenset({"", "~", "null", "Null", "NULL"})

_Loc = tuple[str | int, ...]
_Schema = dict[str, Any]


def load_settings(
    path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """Load the config file (if any), apply environment overrides and validate.

    File choice: ``path`` > ``$SESSIONHUB_CONFIG`` > ``./config-prod.yaml`` when
    ``SESSIONHUB_ENV=prod`` > ``./config.yaml`` > none (all defaults). A named file must exist.
    Raises :class:`ConfigError` with a one-line message on any problem.
    """
    env = os.environ if env is None else env
    environment = env.get("SESSIONHUB_ENV", "").strip().lower() or "dev"
    if environment not in ("dev", "prod"):
        raw = env["SESSIONHUB_ENV"]
        raise ConfigError(f"env SESSIONHUB_ENV = {raw!r}: must be one of 'dev', 'prod'")
    overrides = _env_overrides(env)
    data: dict[str, Any] = {}
    sources: dict[_Loc, str] = {}  # where a key's value came from: that of its longest prefix
    source = None
    file_path = _config_file(path, env, environment)
    if file_path is not None:
        data, source = _read_yaml_file(file_path), os.path.abspath(file_path)
        sources[()] = _printable(str(file_path))
    for key_path, (value, var) in overrides.items():
        other = _OTHER_SPELLING.get(key_path)
        also = () if other is None or (*key_path[:-1], other) in overrides else (other,)
        _set_path(data, key_path, value, also)
        sources[key_path] = f"env {var}"
    return validated({**data, "environment": environment, "source": source}, sources)


def validated(data: Mapping[str, Any], sources: Mapping[_Loc, str] | None = None) -> Settings:
    """``data`` (UPPERCASE YAML-style keys) as Settings; :class:`ConfigError` with the one-line
    message naming the key, and its source where ``sources`` knows it, when it is not valid."""
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_message(exc.errors()[0], sources or {})) from None


def _config_file(
    path: str | os.PathLike[str] | None, env: Mapping[str, str], environment: str
) -> Path | None:
    """The file to read, if any; one named by ``path`` or SESSIONHUB_CONFIG must exist."""
    named = path if path is not None else env.get("SESSIONHUB_CONFIG") or None
    if named is not None:
        # os.path, not Path: Path.exists() raises on a name too long for the file system.
        if not os.path.exists(named):
            by = "" if path is not None else " (named by SESSIONHUB_CONFIG)"
            raise ConfigError(f"{_printable(str(Path(named)))}: config file not found{by}")
        return Path(named)
    found = ["config-prod.yaml"] if environment == "prod" else []
    return next((Path(name) for name in [*found, "config.yaml"] if os.path.isfile(name)), None)


def _read_yaml_file(path: Path) -> dict[str, Any]:
    label = _printable(str(path))
    try:
        data = _parse_yaml(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{label}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{label}: cannot read config file: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{label}{_yaml_problem(exc)}") from None
    if data is None:
        return {}
    top_keys = ", ".join(_allowed_keys(_schema()))
    if not isinstance(data, dict):
        name = type(data).__name__
        kind = {"list": "a list", "str": "a string"}.get(name, f"a {name}")
        raise ConfigError(
            f"{label}: top level must be a mapping of sections ({top_keys}), got {kind}"
        )
    for key in data:
        # Settings fields that load_settings fills in; never file keys.
        if isinstance(key, str) and key.lower() in ("environment", "source"):
            hint = "set SESSIONHUB_ENV instead; " if key.lower() == "environment" else ""
            raise ConfigError(f"{label}: {key}: unknown key ({hint}allowed: {top_keys})")
    # An empty section (all its keys commented out) means "use the defaults".
    return {key: value for key, value in data.items() if value is not None}


def _env_overrides(env: Mapping[str, str]) -> dict[tuple[str, ...], tuple[Any, str]]:
    """The value of each key the environment sets, and the variable it came from."""
    overrides: dict[tuple[str, ...], tuple[Any, str]] = {}
    for var, key_path in _SEED_ENV_VARS.items():
        if env.get(var):
            overrides[key_path] = (_env_value(var, env[var], key_path, nulls=False), var)
    api_keys = [k.strip() for k in env.get("SESSIONHUB_ADMIN_API_KEYS", "").split(",")]
    if any(api_keys):
        keys = [k for k in api_keys if k]
        overrides[("ADMIN", "API_KEYS")] = (keys, "SESSIONHUB_ADMIN_API_KEYS")

    # Namespaced variables come last so they win over the seed's names above.
    sections = [key for key in _allowed_keys(_schema()) if _allowed_keys(_schema_at((key,)))]
    for raw_var in sorted(env):
        if not raw_var.startswith("SESSIONHUB_") or raw_var in _PLAIN_ENV_VARS + _FOREIGN_ENV_VARS:
            continue
        var = _printable(raw_var)
        section, sep, key = var.removeprefix("SESSIONHUB_").partition("__")
        if not sep or not section or not key:
            raise ConfigError(
                f"env {var}: unknown variable (expected SESSIONHUB_<SECTION>__<KEY> or one of "
                f"{', '.join(_PLAIN_ENV_VARS)})"
            )
        if section not in sections:
            raise ConfigError(f"env {var}: unknown section {section} {_allowed(section, sections)}")
        if _schema_at((section, key)) is None:
            allowed = _allowed(key, _allowed_keys(_schema_at((section,))))
            raise ConfigError(f"env {var}: unknown key {section}.{key} {allowed}")
        value = _env_value(var, env[raw_var], (section, key), nulls=True)
        overrides[(section, key)] = (value, var)
    return overrides


def _env_value(var: str, raw: str, key_path: tuple[str, ...], *, nulls: bool) -> Any:
    """raw as the key's value: verbatim for strings, else a YAML scalar (or flow list)."""
    node = _schema_at(key_path) or {}
    bare, nullable = _bare(node)
    if bare.get("type") == "string" and "enum" not in bare:
        return None if nulls and nullable and raw.strip() in _YAML_NULLS else raw
    try:
        return _parse_yaml(raw)
    except yaml.YAMLError as exc:
        shown = repr(MASK) if _has_secret(node) else _clip(repr(raw))
        raise ConfigError(f"env {var} = {shown}{_yaml_problem(exc, with_line=False)}") from None


def _set_path(
    data: dict[str, Any], key_path: tuple[str, ...], value: Any, also: tuple[str, ...]
) -> None:
    """Set the key at key_path to value, replacing the file's value whether it spelled the key
    in UPPERCASE or lowercase, and the file's values under the spellings in ``also``."""
    node = data
    for key in key_path[:-1]:
        child = _pop_key(node, key)
        node[key] = child = {} if child is None else child
        if not isinstance(child, dict):
            return  # keep the file's non-mapping section so validation reports it
        node = child
    for key in (key_path[-1], *also):
        _pop_key(node, key)
    node[key_path[-1]] = value


def _pop_key(node: dict[str, Any], key: str) -> Any:
    value = node.pop(key.lower(), None)
    return node.pop(key, value)


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
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping
)


def _parse_yaml(text: str) -> Any:
    loader = _StrictLoader(text)
    try:
        return loader.get_single_data()
    except (RecursionError, ValueError) as exc:
        # PyYAML lets these through: nesting deeper than Python's stack, and scalars that match
        # a type but not its range (an integer of 5000 digits, a 30th of February).
        problem = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise yaml.YAMLError(problem) from None
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
# A pydantic error as one line. A validator's own words serve as they are; pydantic's words for
# a wrong type or an out-of-range value leave out what the key allows ("Input should be a valid
# integer" for a port), so that is said from the key's JSON schema, which pydantic derives from
# the models: types, bounds, choices, secrets.


def _message(error: ErrorDetails, sources: Mapping[_Loc, str]) -> str:
    loc: _Loc = tuple(part.upper() if isinstance(part, str) else part for part in error["loc"])
    value: Any = error.get("input")
    cause = error.get("ctx", {}).get("error")
    shown = True
    if isinstance(cause, _FieldError):
        loc, value, message = loc + cause.path, cause.value, cause.message
    elif error["type"] in ("extra_forbidden", "invalid_key"):
        loc = (*loc[:-1], str(loc[-1]))  # a non-string YAML key (e.g. 1:) is still a key here
        allowed = _allowed_keys(_schema_at(loc[:-1]) or {})
        message, shown = (
            f"unknown key {_allowed(str(loc[-1]), allowed)}",
            False,
        )  # may hold a password
    elif error["type"] == "missing":
        message, shown = "is required", False
    elif isinstance(cause, Exception):
        message = str(cause)
    else:
        node = _schema_at(loc)
        message = f"must be {_describe(node)}" if node is not None else error["msg"]
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{_printable(p)}" for p in loc)[1:]
    if not where:
        return message
    line = f"{where} = {_show(value, loc)}: {message}" if shown else f"{where}: {message}"
    source = next((sources[loc[:n]] for n in range(len(loc), -1, -1) if loc[:n] in sources), None)
    return line if source is None else f"{source}: {line}"


@functools.cache
def _schema() -> _Schema:
    # Built on first use: importing the config module should not pay for it.
    return Settings.model_json_schema()


def _schema_at(loc: _Loc) -> _Schema | None:
    """The JSON schema of the key at loc (YAML spelling), or None if there is no such key."""
    node = _schema()
    for part in loc:
        bare, _nullable = _bare(node)
        child = bare.get("items") if isinstance(part, int) else bare.get("properties", {}).get(part)
        if child is None:
            return None
        node = child
    return node


def _bare(node: _Schema) -> tuple[_Schema, bool]:
    """node without its null option and with its $ref followed; and whether null is allowed."""
    options: list[_Schema] = node.get("anyOf", [node])
    kept = [option for option in options if option.get("type") != "null"]
    bare = kept[0] if len(kept) == 1 else node
    while "$ref" in bare:
        bare = _schema()["$defs"][bare["$ref"].rpartition("/")[2]]
    return bare, len(kept) < len(options)


def _show(value: Any, loc: _Loc) -> str:
    node = _schema_at(loc)
    if value is None:
        return "null"
    # Anything that is, or may contain, a secret is masked even when it has the wrong shape:
    # `USERS: [<hash>]` must not echo the hash.
    if isinstance(value, SecretStr) or (node is not None and _has_secret(node)):
        if isinstance(value, dict):
            return "{...}"
        return "[...]" if isinstance(value, (list, tuple)) else repr(MASK)
    if loc == ("REDIS", "URL") and isinstance(value, str):
        value = _mask_url(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return _clip(repr(value))


def _describe(node: _Schema) -> str:
    bare, nullable = _bare(node)
    kind = bare.get("type")
    if "enum" in bare:
        text = "one of " + ", ".join(repr(choice) for choice in bare["enum"])
    elif kind == "array":
        text = f"a list (each item: {_describe(bare['items'])})"
    elif kind in ("integer", "number"):
        text = ("an integer" if kind == "integer" else "a finite number") + _bounds(bare)
    elif kind == "string":
        text = "a string" + _lengths(bare)
    elif kind == "boolean":
        text = "true or false"
    else:
        text = f"a mapping (allowed keys: {', '.join(_allowed_keys(bare))})"
    return f"{text} or null" if nullable else text


def _bounds(node: _Schema) -> str:
    symbols = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}
    limits = {key: node[key] for key in symbols if key in node}
    if limits.keys() == {"minimum", "maximum"}:
        return f" from {limits['minimum']} to {limits['maximum']}"
    return "".join(f" {symbols[key]} {limit}" for key, limit in limits.items())


def _lengths(node: _Schema) -> str:
    low, high = node.get("minLength"), node.get("maxLength")
    if high is not None:
        return (
            f" of {low} to {high} characters"
            if low is not None
            else f" of at most {high} characters"
        )
    if low is not None:
        return " (not empty)" if low == 1 else f" of at least {low} characters"
    return ""


def _has_secret(node: _Schema) -> bool:
    bare, _nullable = _bare(node)
    children = [*bare.get("properties", {}).values(), *([bare["items"]] if "items" in bare else [])]
    return bool(bare.get("writeOnly")) or any(_has_secret(child) for child in children)


def _allowed_keys(node: _Schema | None) -> list[str]:
    return sorted(_bare(node)[0].get("properties", {})) if node is not None else []


def _allowed(key: str, allowed: list[str]) -> str:
    """``(did you mean KEY? allowed: A, B)`` for an unknown ``key``."""
    close = difflib.get_close_matches(key, allowed, n=1)
    return f"({f'did you mean {close[0]}? ' if close else ''}allowed: {', '.join(allowed)})"


def _printable(text: str) -> str:
    # Keys and variable names are echoed in messages; a line break in one must not break the line.
    return text if text.isprintable() else repr(text)


def _clip(text: str) -> str:
    return text if len(text) <= 80 else text[:77] + "..."
