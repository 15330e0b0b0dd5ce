"""Tests for sessionhub.config: file choice, env overrides, validation messages, redaction."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import argon2
import pytest
import yaml
from pydantic import BaseModel

from sessionhub.config import RedisSettings, Settings, load_settings, redacted
from sessionhub.exceptions import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[1]

SEED_EXAMPLE = """\
REDIS:
  HOST: localhost
  PORT: 6379
  DB: 0
  PASSWORD: null
  DECODE_RESPONSES: true
SESSION:
  TYPE: redis
  PERMANENT: false
  USE_SIGNER: true
  KEY_PREFIX: 'session:'
  REDIS_KEY_PREFIX: 'session:'
  COOKIE_HTTPONLY: true
  COOKIE_SECURE: false
  EXPIRES: 7200
"""

SECRET = "s3cret-key-0123456789"
API_KEY_1 = "admin-key-aaaaaaaaaaaa"
API_KEY_2 = "admin-key-bbbbbbbbbbbb"


@pytest.fixture(autouse=True)
def _in_tmp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run every test in an empty directory so no real config.yaml is picked up."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def password_hash() -> str:
    """A valid (cheap) argon2 PHC string."""
    return argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash("pw")


def write(name: str, text: str) -> Path:
    path = Path(name)
    path.write_text(text, encoding="utf-8")
    return path


def load_error(text: str | None = None, env: dict[str, str] | None = None) -> str:
    if text is not None:
        write("config.yaml", text)
    with pytest.raises(ConfigError) as info:
        load_settings(env=env or {})
    message = str(info.value)
    assert "\n" not in message
    return message


# --- defaults and files -----------------------------------------------------------------------


def test_defaults_without_any_file() -> None:
    """With no file and no environment every key has its documented default."""
    settings = load_settings(env={})
    assert settings.source is None
    assert settings.environment == "dev"
    assert settings.secret_key is None
    assert settings.redis.host == "localhost"
    assert settings.redis.port == 6379
    assert settings.redis.db == 0
    assert settings.redis.password is None
    assert settings.redis.url is None
    assert settings.redis.socket_timeout == 0.5
    assert settings.redis.connect_timeout == 0.5
    assert settings.redis.retries == 1
    assert settings.redis.max_connections == 64
    assert settings.redis.probe_interval == 5.0
    assert settings.session.type == "redis"
    assert settings.session.key_prefix == "session:"
    assert settings.session.cookie_name == "session"
    assert settings.session.cookie_samesite == "lax"
    assert settings.session.expires == 7200
    assert settings.session.absolute_lifetime == 604800
    assert settings.session.refresh_threshold == 60
    assert settings.session.memory_cleanup_interval == 300
    assert settings.session.memory_max_sessions == 100000
    assert settings.session.index_shards == 16
    assert settings.server.host == "127.0.0.1"
    assert settings.server.port == 5000
    assert settings.server.workers == 1
    assert settings.server.max_body_bytes == 65536
    assert settings.server.log_level == "info"
    assert settings.admin.api_keys == ()
    assert settings.users == ()
    assert settings == Settings(source=None)


def test_seed_example_yaml_loads() -> None:
    """The seed's original example config loads and keeps its values."""
    write("config.yaml", SEED_EXAMPLE)
    settings = load_settings(env={})
    assert settings.source == str(Path("config.yaml").resolve())
    assert settings.redis.decode_responses is True
    assert settings.session.key_prefix == "session:"
    assert settings.session.redis_key_prefix == "session:"
    assert settings.session.expires == 7200


def test_config_example_yaml_matches_defaults() -> None:
    """The repository's config.example.yaml loads and spells out exactly the defaults."""
    settings = load_settings(REPO_ROOT / "config.example.yaml", env={})
    assert redacted(settings) == redacted(Settings())


def test_example_and_docs_cover_every_key() -> None:
    """config.example.yaml sets, and docs/CONFIG.md documents, every key of every section."""
    example = yaml.safe_load((REPO_ROOT / "config.example.yaml").read_text(encoding="utf-8"))
    docs = (REPO_ROOT / "docs" / "CONFIG.md").read_text(encoding="utf-8")
    sections = {
        name.upper(): field.annotation
        for name, field in Settings.model_fields.items()
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
    }
    assert set(example) == {"SECRET_KEY", "USERS", *sections}
    for section, model in sections.items():
        keys = {field.alias for field in model.model_fields.values()}
        assert set(example[section]) == keys
        assert f"### `{section}`" in docs
        for key in keys:
            assert f"| `{key}` |" in docs
    for key in ("SECRET_KEY", "USERS", "USERNAME", "PASSWORD_HASH"):
        assert f"| `{key}` |" in docs


def test_empty_file_and_empty_sections_mean_defaults() -> None:
    """An empty file, or a section whose keys are all commented out, gives the defaults."""
    write("config.yaml", "")
    assert redacted(load_settings(env={})) == redacted(Settings())
    write("config.yaml", "SESSION:\n  # EXPIRES: 60\nADMIN:\n")
    assert redacted(load_settings(env={})) == redacted(Settings())


def test_redis_key_prefix_alias_sets_key_prefix() -> None:
    """REDIS_KEY_PREFIX alone sets KEY_PREFIX."""
    write("config.yaml", "SESSION:\n  REDIS_KEY_PREFIX: 'app:'\n")
    assert load_settings(env={}).session.key_prefix == "app:"


def test_literals_accept_any_case() -> None:
    """COOKIE_SAMESITE and LOG_LEVEL are case-insensitive and stored lowercase."""
    write("config.yaml", "SESSION:\n  COOKIE_SAMESITE: Strict\nSERVER:\n  LOG_LEVEL: DEBUG\n")
    settings = load_settings(env={})
    assert settings.session.cookie_samesite == "strict"
    assert settings.server.log_level == "debug"


def test_users_load(password_hash: str) -> None:
    """USERS entries load with their argon2 hashes kept secret."""
    write("config.yaml", f"USERS:\n  - USERNAME: alice\n    PASSWORD_HASH: '{password_hash}'\n")
    (user,) = load_settings(env={}).users
    assert user.username == "alice"
    assert user.password_hash.get_secret_value() == password_hash


# --- file choice ------------------------------------------------------------------------------


def test_file_choice_explicit_path_wins(tmp_path: Path) -> None:
    """An explicit path beats SESSIONHUB_CONFIG and the cwd files."""
    write("config.yaml", "SERVER:\n  PORT: 1\n")
    write("other.yaml", "SERVER:\n  PORT: 2\n")
    write("explicit.yaml", "SERVER:\n  PORT: 3\n")
    settings = load_settings("explicit.yaml", env={"SESSIONHUB_CONFIG": "other.yaml"})
    assert settings.server.port == 3
    assert settings.source == str(tmp_path / "explicit.yaml")


def test_file_choice_sessionhub_config_beats_cwd() -> None:
    """SESSIONHUB_CONFIG beats config-prod.yaml and config.yaml."""
    write("config.yaml", "SERVER:\n  PORT: 1\n")
    write("config-prod.yaml", f"SECRET_KEY: {SECRET}\nSERVER:\n  PORT: 4\n")
    write("other.yaml", f"SECRET_KEY: {SECRET}\nSERVER:\n  PORT: 2\n")
    env = {"SESSIONHUB_CONFIG": "other.yaml", "SESSIONHUB_ENV": "prod"}
    assert load_settings(env=env).server.port == 2


def test_file_choice_prod_file_in_prod() -> None:
    """With SESSIONHUB_ENV=prod, config-prod.yaml is preferred over config.yaml."""
    write("config.yaml", "SERVER:\n  PORT: 1\n")
    write("config-prod.yaml", f"SECRET_KEY: {SECRET}\nSERVER:\n  PORT: 4\n")
    settings = load_settings(env={"SESSIONHUB_ENV": "prod"})
    assert settings.environment == "prod"
    assert settings.server.port == 4


def test_file_choice_prod_falls_back_to_config_yaml() -> None:
    """In prod without config-prod.yaml, config.yaml is used."""
    write("config.yaml", f"SECRET_KEY: {SECRET}\nSERVER:\n  PORT: 1\n")
    assert load_settings(env={"SESSIONHUB_ENV": "prod"}).server.port == 1


def test_file_choice_dev_ignores_prod_file() -> None:
    """In dev, config-prod.yaml is not read."""
    write("config.yaml", "SERVER:\n  PORT: 1\n")
    write("config-prod.yaml", "SERVER:\n  PORT: 4\n")
    assert load_settings(env={}).server.port == 1


# --- environment overrides --------------------------------------------------------------------


def test_env_legacy_redis_variables_override_file() -> None:
    """REDIS_HOST, REDIS_PORT, REDIS_DB and REDIS_PASSWORD override the file."""
    write("config.yaml", "REDIS:\n  HOST: filehost\n  PORT: 1\n")
    env = {
        "REDIS_HOST": "envhost",
        "REDIS_PORT": "6380",
        "REDIS_DB": "3",
        "REDIS_PASSWORD": "null",
    }
    redis = load_settings(env=env).redis
    assert (redis.host, redis.port, redis.db) == ("envhost", 6380, 3)
    # Secrets are taken verbatim, never YAML-parsed.
    assert redis.password is not None
    assert redis.password.get_secret_value() == "null"
    assert redis.connection_url() == "redis://:null@envhost:6380/3"


def test_env_redis_url_wins_in_connection_url() -> None:
    """REDIS_URL sets REDIS.URL, which connection_url() prefers over host/port/db."""
    env = {"REDIS_URL": "rediss://user:pw@cache:6390/2", "REDIS_HOST": "ignored"}
    redis = load_settings(env=env).redis
    assert redis.url == "rediss://user:pw@cache:6390/2"
    assert redis.connection_url() == "rediss://user:pw@cache:6390/2"


def test_env_secret_key() -> None:
    """SECRET_KEY from the environment overrides the file."""
    write("config.yaml", "SECRET_KEY: file-secret-0123456789\n")
    settings = load_settings(env={"SECRET_KEY": SECRET})
    assert settings.secret_key is not None
    assert settings.secret_key.get_secret_value() == SECRET


def test_env_admin_api_keys_comma_separated() -> None:
    """SESSIONHUB_ADMIN_API_KEYS is split on commas and blank items are dropped."""
    env = {"SESSIONHUB_ADMIN_API_KEYS": f" {API_KEY_1}, ,{API_KEY_2},"}
    keys = load_settings(env=env).admin.api_keys
    assert [k.get_secret_value() for k in keys] == [API_KEY_1, API_KEY_2]


def test_env_section_key_overrides_are_yaml_typed() -> None:
    """SESSIONHUB_<SECTION>__<KEY> values get YAML scalar types."""
    write("config.yaml", "SESSION:\n  EXPIRES: 7200\n  COOKIE_SECURE: false\n")
    env = {
        "SESSIONHUB_SESSION__EXPIRES": "60",
        "SESSIONHUB_SESSION__COOKIE_SECURE": "true",
        "SESSIONHUB_SESSION__COOKIE_DOMAIN": "null",
        "SESSIONHUB_REDIS__SOCKET_TIMEOUT": "2",
        "SESSIONHUB_REDIS__CONNECT_TIMEOUT": "0.25",
        "SESSIONHUB_ADMIN__API_KEYS": f"[{API_KEY_1}, {API_KEY_2}]",
    }
    settings = load_settings(env=env)
    assert settings.session.expires == 60
    assert settings.session.cookie_secure is True
    assert settings.session.cookie_domain is None
    assert settings.redis.socket_timeout == 2.0
    assert settings.redis.connect_timeout == 0.25
    assert len(settings.admin.api_keys) == 2


def test_env_string_keys_are_not_yaml_parsed() -> None:
    """String keys take the variable verbatim, so 'app:' stays a string."""
    env = {"SESSIONHUB_SESSION__KEY_PREFIX": "app:", "SESSIONHUB_SERVER__HOST": "0.0.0.0"}
    settings = load_settings(env=env)
    assert settings.session.key_prefix == "app:"
    assert settings.server.host == "0.0.0.0"


def test_env_namespaced_beats_legacy_variable() -> None:
    """SESSIONHUB_REDIS__PORT wins over REDIS_PORT when both are set."""
    env = {"REDIS_PORT": "1111", "SESSIONHUB_REDIS__PORT": "2222"}
    assert load_settings(env=env).redis.port == 2222


def test_env_override_replaces_lowercase_file_key() -> None:
    """An override replaces a key the file spelled in lowercase instead of clashing with it."""
    write("config.yaml", "session:\n  expires: 100\n")
    assert load_settings(env={"SESSIONHUB_SESSION__EXPIRES": "60"}).session.expires == 60


def test_env_key_prefix_overrides_both_file_spellings() -> None:
    """Overriding KEY_PREFIX from the environment also replaces the file's REDIS_KEY_PREFIX."""
    write("config.yaml", SEED_EXAMPLE)
    settings = load_settings(env={"SESSIONHUB_SESSION__KEY_PREFIX": "app:"})
    assert settings.session.key_prefix == "app:"
    settings = load_settings(env={"SESSIONHUB_SESSION__REDIS_KEY_PREFIX": "app:"})
    assert settings.session.key_prefix == "app:"
    message = load_error(
        env={"SESSIONHUB_SESSION__KEY_PREFIX": "a:", "SESSIONHUB_SESSION__REDIS_KEY_PREFIX": "b:"}
    )
    assert message.startswith("env SESSIONHUB_SESSION__REDIS_KEY_PREFIX: SESSION.REDIS_KEY_PREFIX")


def test_error_values_inside_secret_sections_are_masked() -> None:
    """A wrongly shaped value where secrets live is not echoed."""
    message = load_error("USERS:\n  - '$argon2id$v=19$m=8,t=1,p=1$c2FsdA$aGFzaA'\n")
    assert message.startswith("config.yaml: USERS[0] = '***': must be a mapping")
    assert "argon2id" not in message


def test_env_empty_legacy_variable_is_unset() -> None:
    """An empty REDIS_HOST or SECRET_KEY counts as not set."""
    settings = load_settings(env={"REDIS_HOST": "", "SECRET_KEY": ""})
    assert settings.redis.host == "localhost"
    assert settings.secret_key is None


# --- prod -------------------------------------------------------------------------------------


def test_prod_without_secret_key_fails() -> None:
    """SESSIONHUB_ENV=prod without SECRET_KEY is rejected with the documented message."""
    message = load_error(env={"SESSIONHUB_ENV": "prod"})
    assert message == (
        "SECRET_KEY is required when SESSIONHUB_ENV=prod (set it in the config file or the "
        "SECRET_KEY environment variable)"
    )


def test_prod_with_secret_key_from_env_loads() -> None:
    """SESSIONHUB_ENV=prod with SECRET_KEY in the environment loads."""
    settings = load_settings(env={"SESSIONHUB_ENV": "prod", "SECRET_KEY": SECRET})
    assert settings.environment == "prod"


def test_bad_sessionhub_env_value() -> None:
    """SESSIONHUB_ENV other than dev or prod is an error naming the value."""
    message = load_error(env={"SESSIONHUB_ENV": "staging"})
    assert "SESSIONHUB_ENV" in message
    assert "'staging'" in message
    assert "'dev', 'prod'" in message


# --- errors -----------------------------------------------------------------------------------


def test_error_unknown_key() -> None:
    """An unknown key in a section is named with the allowed keys."""
    message = load_error("SESSION:\n  EXPIRE: 60\n")
    assert message.startswith("config.yaml: SESSION.EXPIRE: unknown key (did you mean EXPIRES?")
    assert "COOKIE_HTTPONLY" in message


def test_error_unknown_section() -> None:
    """An unknown top-level section is named with the allowed sections."""
    message = load_error("SESSON:\n  EXPIRES: 60\n")
    assert message.startswith("config.yaml: SESSON: unknown key")
    assert "SESSION" in message


def test_error_environment_is_not_a_yaml_key() -> None:
    """ENVIRONMENT in the file is rejected; it comes from SESSIONHUB_ENV only."""
    message = load_error("ENVIRONMENT: prod\n")
    assert "ENVIRONMENT: unknown key" in message
    assert "SESSIONHUB_ENV" in message


def test_error_wrong_type() -> None:
    """A string where an integer belongs is named with the value and the allowed range."""
    message = load_error("SESSION:\n  EXPIRES: abc\n")
    assert message == "config.yaml: SESSION.EXPIRES = 'abc': must be an integer >= 1"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("SESSION:\n  EXPIRES: 1.5\n", "SESSION.EXPIRES = 1.5: must be an integer"),
        ("SESSION:\n  EXPIRES: true\n", "SESSION.EXPIRES = true: must be an integer"),
        ("SESSION:\n  PERMANENT: 'yes'\n", "SESSION.PERMANENT = 'yes': must be true or false"),
        ("SESSION:\n  PERMANENT: 1\n", "SESSION.PERMANENT = 1: must be true or false"),
        ("SERVER:\n  HOST: 1234\n", "SERVER.HOST = 1234: must be a string"),
    ],
)
def test_error_strict_types(text: str, expected: str) -> None:
    """Integers reject floats and booleans; booleans reject quoted words and numbers."""
    assert expected in load_error(text)


def test_error_out_of_range() -> None:
    """A number outside its range is named with the value and the range."""
    message = load_error("REDIS:\n  PORT: 70000\n")
    assert message == "config.yaml: REDIS.PORT = 70000: must be an integer from 1 to 65535"


def test_error_bad_choice() -> None:
    """A value outside a fixed set lists the choices."""
    message = load_error("SESSION:\n  TYPE: disk\n")
    assert message == "config.yaml: SESSION.TYPE = 'disk': must be one of 'redis', 'memory'"


def test_error_bad_yaml() -> None:
    """Broken YAML is reported with the file and line."""
    message = load_error("SESSION:\n  EXPIRES: 60\n  KEY_PREFIX: [oops\n")
    assert message.startswith("config.yaml line ")
    assert "invalid YAML" in message


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("SESSION:\n  EXPIRES: " + "9" * 5000 + "\n", "Exceeds the limit (4300 digits)"),
        ("SESSION:\n  EXPIRES: 2001-02-30\n", "day is out of range for month"),
        ("[" * 600, "nested too deeply"),
    ],
)
def test_error_yaml_python_cannot_hold(text: str, problem: str) -> None:
    """YAML that parses but that Python refuses to build is invalid YAML, not a crash."""
    assert load_error(text).startswith(f"config.yaml: invalid YAML: {problem}")
    message = load_error(env={"SESSIONHUB_SESSION__EXPIRES": text.rpartition(" ")[2].strip()})
    assert message.startswith("env SESSIONHUB_SESSION__EXPIRES = '")
    assert f": invalid YAML: {problem}" in message


def test_error_names_are_quoted_when_they_would_break_the_line() -> None:
    """Keys and variable names with line breaks are shown quoted, keeping the message one line."""
    assert load_error('SESSION:\n  "EXP\\rIRES": 1\n').startswith(
        "config.yaml: SESSION.'EXP\\rIRES': unknown key"
    )
    assert load_error(env={"SESSIONHUB_\x1e": ""}).startswith("env 'SESSIONHUB_\\x1e': unknown")


def test_error_duplicate_yaml_key() -> None:
    """A key given twice in one mapping is an error instead of last-one-wins."""
    message = load_error("SESSION:\n  EXPIRES: 60\n  EXPIRES: 70\n")
    assert message == "config.yaml line 3: invalid YAML: found duplicate key 'EXPIRES'"


def test_error_top_level_not_mapping() -> None:
    """A top level that is not a mapping is rejected."""
    message = load_error("- REDIS\n- SESSION\n")
    assert message.startswith("config.yaml: top level must be a mapping")
    assert "got a list" in message


def test_error_section_not_mapping() -> None:
    """A section that is not a mapping is named with its value."""
    message = load_error("SESSION: 5\n")
    assert message.startswith("config.yaml: SESSION = 5: must be a mapping (allowed keys:")


def test_error_missing_explicit_file() -> None:
    """A file named by argument or SESSIONHUB_CONFIG must exist."""
    with pytest.raises(ConfigError, match=r"^nope\.yaml: config file not found$"):
        load_settings("nope.yaml", env={})
    with pytest.raises(
        ConfigError, match=r"^gone\.yaml: config file not found .*SESSIONHUB_CONFIG"
    ):
        load_settings(env={"SESSIONHUB_CONFIG": "gone.yaml"})
    with pytest.raises(ConfigError, match=r"^0+: config file not found "):
        load_settings(env={"SESSIONHUB_CONFIG": "0" * 300})  # too long for the file system


def test_error_bad_env_var_name() -> None:
    """Unknown SESSIONHUB_ variables are errors naming the variable."""
    message = load_error(env={"SESSIONHUB_SESSION__EXPIRE": "60"})
    assert message.startswith("env SESSIONHUB_SESSION__EXPIRE: unknown key SESSION.EXPIRE")
    message = load_error(env={"SESSIONHUB_SESION__EXPIRES": "60"})
    assert message.startswith("env SESSIONHUB_SESION__EXPIRES: unknown section SESION")
    message = load_error(env={"SESSIONHUB_SECRET_KEY": SECRET})
    assert message.startswith("env SESSIONHUB_SECRET_KEY: unknown variable")
    assert SECRET not in message


def test_error_bad_env_value_names_variable() -> None:
    """A bad value from the environment names the variable, the key and the value."""
    message = load_error(env={"SESSIONHUB_SESSION__EXPIRES": "abc"})
    assert message == (
        "env SESSIONHUB_SESSION__EXPIRES: SESSION.EXPIRES = 'abc': must be an integer >= 1"
    )
    message = load_error(env={"REDIS_PORT": "0"})
    assert message.startswith("env REDIS_PORT: REDIS.PORT = 0: must be an integer")


def test_null_key_prefix_means_default() -> None:
    """REDIS_KEY_PREFIX: null, as in config.example.yaml, leaves KEY_PREFIX at its default."""
    write("config.yaml", "SESSION:\n  REDIS_KEY_PREFIX: null\n")
    assert load_settings(env={}).session.key_prefix == "session:"


def test_error_names_the_spelling_the_file_used() -> None:
    """A bad REDIS_KEY_PREFIX is reported under that name, not under KEY_PREFIX."""
    message = load_error("SESSION:\n  REDIS_KEY_PREFIX: 'a{b}:'\n")
    assert message.startswith("config.yaml: SESSION.REDIS_KEY_PREFIX = 'a{b}:': must not contain")


def test_error_conflicting_key_prefixes() -> None:
    """KEY_PREFIX and REDIS_KEY_PREFIX with different values conflict."""
    message = load_error("SESSION:\n  KEY_PREFIX: 'a:'\n  REDIS_KEY_PREFIX: 'b:'\n")
    assert message.startswith(
        "config.yaml: SESSION.REDIS_KEY_PREFIX = 'b:': conflicts with KEY_PREFIX = 'a:'"
    )


def test_error_samesite_none_without_secure() -> None:
    """COOKIE_SAMESITE none needs COOKIE_SECURE true."""
    message = load_error("SESSION:\n  COOKIE_SAMESITE: None\n")
    assert message.startswith("config.yaml: SESSION.COOKIE_SAMESITE = 'none': requires")
    assert "COOKIE_SECURE" in message
    write("config.yaml", "SESSION:\n  COOKIE_SAMESITE: none\n  COOKIE_SECURE: true\n")
    assert load_settings(env={}).session.cookie_samesite == "none"


def test_error_absolute_lifetime_below_expires() -> None:
    """ABSOLUTE_LIFETIME shorter than EXPIRES is rejected."""
    message = load_error("SESSION:\n  EXPIRES: 100\n  ABSOLUTE_LIFETIME: 50\n")
    assert message == "config.yaml: SESSION.ABSOLUTE_LIFETIME = 50: must be >= EXPIRES (100)"


def test_error_refresh_threshold_not_below_expires() -> None:
    """REFRESH_THRESHOLD must be shorter than EXPIRES."""
    message = load_error("SESSION:\n  EXPIRES: 100\n  REFRESH_THRESHOLD: 100\n")
    assert message == "config.yaml: SESSION.REFRESH_THRESHOLD = 100: must be < EXPIRES (100)"


def test_error_bad_password_hash() -> None:
    """A password hash that is not argon2 is rejected without echoing it."""
    message = load_error("USERS:\n  - USERNAME: alice\n    PASSWORD_HASH: hunter2\n")
    assert message == (
        "config.yaml: USERS[0].PASSWORD_HASH = '***': must be an argon2 PHC string, "
        "e.g. from `sessionhub hash-password`"
    )


@pytest.mark.parametrize(
    "phc",
    [
        "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2g",
        "$argon2i$m=4096,t=3,p=1$c2FsdHNhbHQ$aGFzaGhhc2g",  # Argon2 v1.2: no version field
    ],
)
def test_password_hash_accepts_argon2_phc_strings(phc: str) -> None:
    """PASSWORD_HASH takes the PHC strings argon2 writes, with or without a version field."""
    write("config.yaml", f"USERS:\n  - USERNAME: alice\n    PASSWORD_HASH: '{phc}'\n")
    (user,) = load_settings(env={}).users
    assert user.password_hash.get_secret_value() == phc


@pytest.mark.parametrize(
    "phc",
    [
        "$argon2id$v=19$m=8,t=1,p=1$c2FsdA",
        "$argon2x$v=19$m=8,t=1,p=1$c2FsdA$aGFzaA",
        "$argon2id$v=19$m=8,t=1$c2FsdA$aGFzaA",
        "$argon2id$v=19$m=8,t=1,p=1$c2FsdA$aGFzaA\\n",
        "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",
    ],
)
def test_password_hash_rejects_what_is_not_argon2(phc: str) -> None:
    """Truncated, unknown-variant, bcrypt and trailing-newline hashes are rejected."""
    message = load_error(f'USERS:\n  - USERNAME: alice\n    PASSWORD_HASH: "{phc}"\n')
    assert message.startswith("config.yaml: USERS[0].PASSWORD_HASH = '***': must be an argon2")


def test_config_does_not_import_argon2() -> None:
    """Settings load without argon2, which only the service needs."""
    code = "import sys, sessionhub.config; sys.exit('argon2' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_error_duplicate_users(password_hash: str) -> None:
    """Two users with the same USERNAME are rejected."""
    entry = f"  - USERNAME: alice\n    PASSWORD_HASH: '{password_hash}'\n"
    message = load_error("USERS:\n" + entry + entry)
    assert message.startswith("config.yaml: USERS[1].USERNAME = 'alice': duplicate username")


def test_error_bad_username(password_hash: str) -> None:
    """A username with whitespace is rejected."""
    message = load_error(f"USERS:\n  - USERNAME: 'al ice'\n    PASSWORD_HASH: '{password_hash}'\n")
    assert message.startswith("config.yaml: USERS[0].USERNAME = 'al ice': must not contain")


def test_error_brace_in_key_prefix() -> None:
    """A '{' or '}' in KEY_PREFIX is rejected because SessionHub owns hash tags."""
    message = load_error("SESSION:\n  KEY_PREFIX: 'app:{x}:'\n")
    assert message.startswith("config.yaml: SESSION.KEY_PREFIX = 'app:{x}:': must not contain")


def test_error_bad_cookie_name() -> None:
    """A cookie name with separators is rejected."""
    message = load_error("SESSION:\n  COOKIE_NAME: 'my session'\n")
    assert message.startswith("config.yaml: SESSION.COOKIE_NAME = 'my session': must be")


def test_error_bad_redis_url_masks_password() -> None:
    """A REDIS.URL with the wrong scheme is named with its password masked."""
    message = load_error("REDIS:\n  URL: 'http://user:hunter2@cache'\n")
    assert message == (
        "config.yaml: REDIS.URL = 'http://user:***@cache': "
        "must start with redis://, rediss:// or unix://"
    )


def test_error_short_secrets_are_masked() -> None:
    """Too-short SECRET_KEY and API keys are reported without their values."""
    message = load_error(env={"SECRET_KEY": "tooshort"})
    assert message == (
        "env SECRET_KEY: SECRET_KEY = '***': must be a string of at least 16 characters or null"
    )
    message = load_error("ADMIN:\n  API_KEYS: [tooshort]\n")
    assert message == (
        "config.yaml: ADMIN.API_KEYS[0] = '***': must be a string of at least 16 characters"
    )


# --- redaction and URLs -----------------------------------------------------------------------


def test_redacted_masks_every_secret(password_hash: str) -> None:
    """redacted() replaces every secret with *** and keeps the rest as YAML-keyed values."""
    write(
        "config.yaml",
        f"SECRET_KEY: {SECRET}\n"
        "REDIS:\n  PASSWORD: redis-pw\n  URL: 'redis://user:url-pw@cache:6379/0'\n"
        f"ADMIN:\n  API_KEYS: [{API_KEY_1}, {API_KEY_2}]\n"
        f"USERS:\n  - USERNAME: alice\n    PASSWORD_HASH: '{password_hash}'\n",
    )
    data = redacted(load_settings(env={}))
    assert data["SECRET_KEY"] == "***"
    assert data["REDIS"]["PASSWORD"] == "***"
    assert data["REDIS"]["URL"] == "redis://user:***@cache:6379/0"
    assert data["ADMIN"]["API_KEYS"] == ["***", "***"]
    assert data["USERS"] == [{"USERNAME": "alice", "PASSWORD_HASH": "***"}]
    assert data["SESSION"]["EXPIRES"] == 7200
    assert "ENVIRONMENT" not in data
    assert "SOURCE" not in data
    text = repr(data)
    for secret in (SECRET, "redis-pw", "url-pw", API_KEY_1, API_KEY_2, password_hash):
        assert secret not in text


def test_redacted_keeps_unset_secrets_as_none() -> None:
    """Unset secrets stay None in redacted()."""
    data = redacted(Settings())
    assert data["SECRET_KEY"] is None
    assert data["REDIS"]["PASSWORD"] is None
    assert data["REDIS"]["URL"] is None


def test_connection_url_quotes_credentials() -> None:
    """connection_url() builds a redis:// URL with the password URL-quoted."""
    redis = RedisSettings.model_validate(
        {"HOST": "cache", "PORT": 6380, "DB": 2, "USERNAME": "app", "PASSWORD": "p@ss:/w"}
    )
    assert redis.connection_url() == "redis://app:p%40ss%3A%2Fw@cache:6380/2"
    assert RedisSettings().connection_url() == "redis://localhost:6379/0"


def test_connection_url_masked() -> None:
    """connection_url(masked=True) hides the password of built and explicit URLs."""
    built = RedisSettings.model_validate({"HOST": "cache", "PASSWORD": "pw"})
    assert built.connection_url(masked=True) == "redis://:***@cache:6379/0"
    explicit = RedisSettings.model_validate({"URL": "redis://app:pw@cache:6379/1"})
    assert explicit.connection_url(masked=True) == "redis://app:***@cache:6379/1"
    assert explicit.masked_url() == "redis://app:***@cache:6379/1"


def test_test_suite_redis_server_variable_is_ignored() -> None:
    """SESSIONHUB_REDIS_SERVER (the test suite's redis-server path) is not a config error."""
    assert (
        load_settings(env={"SESSIONHUB_REDIS_SERVER": "/usr/bin/redis-server"}).redis.port == 6379
    )


def test_sentinel_tls_is_refused_outside_sentinel_mode() -> None:
    """SENTINEL_TLS with MODE: cluster is a one-line error naming the key and why."""
    write("config.yaml", "REDIS:\n  MODE: cluster\n  CLUSTER_NODES: [a:1]\n  SENTINEL_TLS: true\n")
    with pytest.raises(ConfigError, match=r"SENTINEL_TLS.*only used with MODE: sentinel") as caught:
        load_settings(env={})
    assert "\n" not in str(caught.value)
