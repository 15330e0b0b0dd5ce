"""What each endpoint accepts: request bodies and query parameters as pydantic models.

The same models validate requests (:mod:`.bodies`) and give the OpenAPI document its schemas
(:mod:`.openapi`), so the document cannot drift from what the service checks.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    model_validator,
)
from pydantic_core import PydanticCustomError

from ..inbox import MAX_PAGE
from ..preferences import MAX_CUSTOM_KEY, THEMES

MAX_USERNAME = 128
MAX_PASSWORD = 1024
MAX_USER_ID = 128
MAX_ONLINE_PAGE = 1000
_U64 = 2**64 - 1
# Two unsigned 64-bit integers, as Redis stream ids are: 20 digits each at most.
_LAST_ID = f"{_U64}-{_U64}"
MESSAGE_ID_PATTERN = r"^[0-9]{1,20}-[0-9]{1,20}$"


def _fits_u64(digits: str) -> bool:
    # ASCII digits only: str.isdigit() also takes "²", which int() then refuses.
    return digits.isascii() and digits.isdigit() and len(digits) <= 20 and int(digits) <= _U64


def message_id(value: str) -> str:
    """``value`` if it is a Redis stream id ``<ms>-<seq>`` whose parts fit 64 bits unsigned."""
    ms, sep, seq = value.partition("-")
    # The very last id has nothing after it, and Redis refuses to read after it ("invalid start
    # ID"): refused here until the inbox answers an empty page for it.
    if not (sep and _fits_u64(ms) and _fits_u64(seq)) or value == _LAST_ID:
        raise PydanticCustomError(
            "message_id",
            "must be a message id <ms>-<seq>, two integers 0..18446744073709551615 (not both the "
            "largest), such as 1700000000000-0",
        )
    return value


MessageId = Annotated[
    StrictStr,
    Field(max_length=41, json_schema_extra={"pattern": MESSAGE_ID_PATTERN}),
    AfterValidator(message_id),
]


class Body(BaseModel):
    """A JSON object body; keys a client may add for its own reasons are ignored."""

    model_config = ConfigDict(strict=True, extra="ignore")


class LoginBody(Body):
    username: StrictStr = Field(min_length=1, max_length=MAX_USERNAME)
    password: StrictStr = Field(min_length=1, max_length=MAX_PASSWORD)
    remember: StrictBool = Field(
        False, description="Remember me: SESSION.REMEMBER_EXPIRES and REMEMBER_ABSOLUTE_LIFETIME"
    )


class ReauthBody(Body):
    password: StrictStr = Field(min_length=1, max_length=MAX_PASSWORD)


class RevokeBody(Body):
    reason: StrictStr = Field(
        "account_disabled",
        min_length=1,
        max_length=64,
        pattern=r"^[a-z0-9_]+$",
        description="Why, for the log: account_disabled, credentials_changed, compromised...",
    )


class AdminLoginBody(Body):
    key: StrictStr = Field(
        min_length=1, max_length=MAX_PASSWORD, description="An ADMIN.API_KEYS key"
    )


class MessageBody(Body):
    body: Any = Field(description="Any JSON value, at most MESSAGES.MAX_BODY_BYTES as JSON")


class SendBody(MessageBody):
    to: StrictStr = Field(min_length=1, max_length=MAX_USER_ID)


class MarkReadBody(Body):
    up_to: MessageId | None = None
    ids: list[MessageId] = Field(default_factory=list, max_length=MAX_PAGE)

    @model_validator(mode="after")
    def _something_to_mark(self) -> MarkReadBody:
        if self.up_to is None and not self.ids:
            raise PydanticCustomError("missing", "give 'up_to' or 'ids'")
        return self


class SettingsBody(BaseModel):
    """The shape of a settings document; which values are allowed is the library's rule
    (:meth:`sessionhub.preferences.PreferencesOps.validate`), checked after this."""

    model_config = ConfigDict(strict=True, extra="forbid")

    theme: StrictStr | None = Field(None, json_schema_extra={"enum": [*THEMES, None]})
    language: StrictStr | None = Field(None, max_length=35, description="BCP 47, e.g. zh-CN")
    timezone: StrictStr | None = Field(None, max_length=64, description="IANA, e.g. Europe/Paris")
    notifications: StrictBool | None = None
    custom: dict[Annotated[str, Field(max_length=MAX_CUSTOM_KEY)], Any] | None = None


class Query(BaseModel):
    """Query parameters arrive as text: ints and booleans are parsed from it (not strict)."""

    model_config = ConfigDict(extra="ignore")


class MessagesQuery(Query):
    limit: int = Field(50, ge=1, le=MAX_PAGE)
    unread: bool = False
    cursor: MessageId | None = None


class OnlineUsersQuery(Query):
    limit: int = Field(100, ge=1, le=MAX_ONLINE_PAGE)
    cursor: str | None = Field(
        None, max_length=200, pattern=r"^[0-9]{1,20}:", description="next_cursor of a page"
    )


class DailyQuery(Query):
    date: str | None = Field(None, pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$", examples=["2026-11-21"])


class StreamQuery(Query):
    last_event_id: MessageId | None = Field(None, description="Same as the Last-Event-ID header")
