"""Field types and the page base of the VIAS list answers, lenient in the ways the real API
varies. Each list's item and page models live in its module of `exporter.lists`.

Every variant in the reference is accepted: upper/lower-case states, unknown states kept,
`type` as "0"/"1"/cloud/edge, times as epoch-ms strings or numbers or ISO 8601, missing or
null fields, unknown fields ignored. Models expose one vocabulary (`vendor`, `algorithm`,
`deployment`) whatever the endpoint calls the fields.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictStr,
    ValidationError,
)

from exporter.errors import ViasResponseError, safe_excerpt

UNKNOWN_STATE = "UNKNOWN"

_DEPLOYMENTS = {"0": "cloud", "1": "edge", "cloud": "cloud", "edge": "edge"}


def normalize_state(raw: object) -> str:
    """Upper-case a state; keep states we do not know, name a missing one UNKNOWN."""
    if raw is None or raw == "":
        return UNKNOWN_STATE
    return str(raw).strip().upper()


def normalize_deployment(raw: object) -> str:
    """Map the API's `type` to cloud/edge; keep an unknown raw value as sent."""
    if raw is None:
        return ""
    text = raw if isinstance(raw, str) else str(raw)
    if (known := _DEPLOYMENTS.get(text)) is not None:  # the common case, as sent
        return known
    text = text.strip()
    return _DEPLOYMENTS.get(text.lower(), text)


def _text(raw: object) -> str:
    """Missing or null text becomes ""; numbers become their decimal text."""
    if raw is None:
        return ""
    if isinstance(raw, str):
        return raw
    if isinstance(raw, bool | int | float):
        return str(raw)
    raise ValueError("expected a string")


def _optional_text(raw: object) -> str | None:
    return None if raw is None else _text(raw)


def parse_time(raw: str | float | None) -> datetime | None:
    """Epoch milliseconds (number or digit string) or ISO 8601, to an aware datetime."""
    if raw is None or raw == "":
        return None
    if isinstance(raw, int | float):
        return datetime.fromtimestamp(raw / 1000, tz=UTC)
    text = raw.strip()
    if text.lstrip("-").isdigit():
        return datetime.fromtimestamp(int(text) / 1000, tz=UTC)
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _state_counts(raw: object) -> dict[str, int]:
    """`batch_task_status_info`: lower-case states with only the non-zero ones present."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValueError("expected an object of state counts")
    counts: dict[str, int] = {}
    for state, count in raw.items():
        if count is None:
            continue
        try:
            number = int(count)
        except (TypeError, OverflowError):  # a list, an object, inf: pydantic wants ValueError
            raise ValueError("expected a number of tasks per state") from None
        counts[normalize_state(state)] = counts.get(normalize_state(state), 0) + number
    return counts


# Each field type validates its common case natively (in pydantic-core, no Python call per
# field: a page of 1,000 jobs would otherwise make ~10,000 calls) and hands anything else
# to the same Python normalizer as ever, so every value ends up exactly as the normalizer
# makes it: a plain string is already its own `_text`, a known upper-case state and
# "cloud"/"edge" are already normalized.
_FIRST_MATCH = Field(union_mode="left_to_right")
if TYPE_CHECKING:
    Text = str
    OptionalText = str | None
    Deployment = str
    DeploymentCode = str
else:
    Text = Annotated[StrictStr | Annotated[Any, AfterValidator(_text)], _FIRST_MATCH]
    OptionalText = Annotated[
        StrictStr | Annotated[Any, AfterValidator(_optional_text)] | None, _FIRST_MATCH
    ]
    Deployment = Annotated[
        Literal["cloud", "edge"] | Annotated[Any, AfterValidator(normalize_deployment)],
        _FIRST_MATCH,
    ]
    # A string as sent, to be mapped by `normalize_deployment` where it is read; anything
    # else normalized now (a string is kept without a Python call per item).
    DeploymentCode = Annotated[
        StrictStr | Annotated[Any, AfterValidator(normalize_deployment)], _FIRST_MATCH
    ]
StateCounts = Annotated[dict[str, int], BeforeValidator(_state_counts)]


def state_type(known: tuple[str, ...]) -> Any:
    """A state field type: the list's `known` states natively, anything else normalized.
    (Declare it as `str` for type checkers: `if TYPE_CHECKING: State = str`.)"""
    return Annotated[
        Literal[(*known, UNKNOWN_STATE)] | Annotated[Any, AfterValidator(normalize_state)],
        _FIRST_MATCH,
    ]


class ApiModel(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


def _no_items(raw: None) -> list[Any]:
    """A missing or null item list is an empty page."""
    return []


ItemT = TypeVar("ItemT")
# Not a BeforeValidator: that would make pydantic build the whole page as Python dicts
# first instead of validating straight from the JSON.
if TYPE_CHECKING:
    Items = list
else:
    Items = Annotated[list[ItemT] | Annotated[None, AfterValidator(_no_items)], _FIRST_MATCH]


class Page(ApiModel, Generic[ItemT]):
    """One page of a list endpoint: its items (under the endpoint's own key) and `count`."""

    count: int | None = None

    @property
    def items(self) -> list[ItemT]:
        raise NotImplementedError


M = TypeVar("M", bound=BaseModel)


class _AnyObject(BaseModel):
    """Any JSON object; pydantic-core checks the syntax without building its values."""

    model_config = ConfigDict(extra="ignore")


def check_json(body: bytes, endpoint: str) -> bytes:
    """`body` if it is a whole JSON object; else the retryable error of a body cut short.

    Cheap (no Python objects are built: ~0.5 ms for a 1,000-job page), so a window of pages
    can be checked inside their retried requests and still be kept as bytes, each parsed
    into models only when its turn comes: one page of models in memory, not a window."""
    try:
        _AnyObject.model_validate_json(body)
    except ValidationError as error:
        if any(e["type"] == "json_invalid" for e in error.errors()):
            raise ViasResponseError(
                f"body is not valid JSON from {endpoint}: {safe_excerpt(body)}",
                endpoint=endpoint,
                retryable=True,
            ) from None
    return body


def parse_model(model: type[M], body: bytes, endpoint: str) -> M:
    """Validate a body straight from JSON bytes (no intermediate dicts for a whole page)."""
    try:
        return model.model_validate_json(body)
    except ValidationError as error:
        not_json = any(e["type"] == "json_invalid" for e in error.errors())
        problem = "body is not valid JSON" if not_json else "unexpected JSON shape"
        raise ViasResponseError(
            f"{problem} from {endpoint}: {safe_excerpt(body)}",
            endpoint=endpoint,
            retryable=not_json,  # a cut body may be a dropped connection; a wrong shape is not
        ) from None
