"""Pydantic models of the VIAS list answers, lenient in the ways the real API varies.

Every variant in the reference is accepted: upper/lower-case states, unknown states kept,
`type` as "0"/"1"/cloud/edge, times as epoch-ms strings or numbers or ISO 8601, missing or
null fields, unknown fields ignored. Models expose one vocabulary (`vendor`, `algorithm`,
`deployment`) whatever the endpoint calls the fields.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Protocol, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
)

from exporter.errors import ViasResponseError, safe_excerpt

# The 17 states the /v2/tasks filter documents, in its order.
TASK_STATES: tuple[str, ...] = (
    "PENDING",
    "RECOVERING",
    "STARTING",
    "UPGRADING",
    "CREATE_FAILED",
    "START_FAILED",
    "RUNNING",
    "STOPPING",
    "STOPPED",
    "ABNORMAL",
    "SUCCEEDED",
    "FAILED",
    "DELETING",
    "FREEZING",
    "FROZEN",
    "SCHEDULING",
    "LACK_OF_RESOURCES",
)
# Batch tasks know one more: pending after the service was redeployed.
BATCH_TASK_STATES: tuple[str, ...] = (*TASK_STATES, "STOPPED_NO_SERVICE")
PROBLEM_STATES: frozenset[str] = frozenset(
    {"ABNORMAL", "FAILED", "LACK_OF_RESOURCES", "CREATE_FAILED", "START_FAILED"}
)
UNKNOWN_STATE = "UNKNOWN"
FACE_EXTRACTION_ALGORITHM = "face_extraction"

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
    text = str(raw).strip()
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
    State = str
    Deployment = str
    RawTime = str | int | float | None
else:
    _KnownState = Literal[(*BATCH_TASK_STATES, UNKNOWN_STATE)]
    Text = Annotated[StrictStr | Annotated[Any, AfterValidator(_text)], _FIRST_MATCH]
    OptionalText = Annotated[
        StrictStr | Annotated[Any, AfterValidator(_optional_text)] | None, _FIRST_MATCH
    ]
    State = Annotated[_KnownState | Annotated[Any, AfterValidator(normalize_state)], _FIRST_MATCH]
    Deployment = Annotated[
        Literal["cloud", "edge"] | Annotated[Any, AfterValidator(normalize_deployment)],
        _FIRST_MATCH,
    ]
    # Exact JSON types first; the rest (bools, say) as the smart union always chose.
    RawTime = Annotated[
        StrictStr
        | StrictInt
        | StrictFloat
        | Annotated[str | int | float | None, Field(union_mode="smart")]
        | None,
        _FIRST_MATCH,
    ]
StateCounts = Annotated[dict[str, int], BeforeValidator(_state_counts)]


class _ApiModel(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class TaskError(_ApiModel):
    code: Text = ""
    message: Text = ""


class Job(Protocol):
    """What aggregation needs of a job, whichever endpoint listed it."""

    @property
    def id(self) -> str | None: ...
    @property
    def name(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def vendor(self) -> str: ...
    @property
    def algorithm(self) -> str: ...
    @property
    def deployment(self) -> str: ...
    @property
    def error_code(self) -> str: ...


class Task(_ApiModel):
    """A job from /v2/tasks, /v1/infer/tasks or the /v1 job detail."""

    id: OptionalText = None
    name: Text = ""
    state: State = UNKNOWN_STATE
    vendor: Text = Field(default="", alias="company")
    algorithm: Text = Field(default="", alias="title")
    deployment: Deployment = Field(default="", alias="type")
    error: TaskError | None = None
    # Only what the metrics use is kept: a page of models is held in memory at a time.
    created_at: RawTime = None
    updated_at: RawTime = None

    @property
    def error_code(self) -> str:
        return self.error.code if self.error else ""

    @property
    def created(self) -> datetime | None:
        return parse_time(self.created_at)

    @property
    def updated(self) -> datetime | None:
        return parse_time(self.updated_at)


class FaceEdgeTask(_ApiModel):
    """An edge face-extraction job: no vendor or algorithm, every job runs on the edge."""

    id: OptionalText = None
    name: Text = ""
    state: State = UNKNOWN_STATE
    edge_pool_id: Text = ""
    created_at: RawTime = None
    updated_at: RawTime = None

    vendor: ClassVar[str] = ""
    algorithm: ClassVar[str] = FACE_EXTRACTION_ALGORITHM
    deployment: ClassVar[str] = "edge"
    error_code: ClassVar[str] = ""

    @property
    def created(self) -> datetime | None:
        return parse_time(self.created_at)


class BatchTask(_ApiModel):
    id: OptionalText = None
    name: Text = Field(default="", alias="batch_task_name")
    vendor: Text = Field(default="", alias="company")
    algorithm: Text = Field(default="", alias="alg_name")
    deployment: Deployment = Field(default="", alias="type")
    video_group: Text = Field(default="", alias="video_group_name")
    num_task: int | None = None
    created_at: RawTime = None
    state_counts: StateCounts = Field(default_factory=dict, alias="batch_task_status_info")


def _no_items(raw: None) -> list[Any]:
    """A missing or null item list is an empty page."""
    return []


_I = TypeVar("_I")
# Not a BeforeValidator: that would make pydantic build the whole page as Python dicts
# first instead of validating straight from the JSON.
if TYPE_CHECKING:
    Items = list
else:
    Items = Annotated[list[_I] | Annotated[None, AfterValidator(_no_items)], _FIRST_MATCH]


class Page(_ApiModel):
    """One page of a list endpoint: its items and the endpoint's `count`."""

    count: int | None = None

    @property
    def items(self) -> list[Any]:
        raise NotImplementedError


class TaskPage(Page):
    tasks: Items[Task] = Field(default_factory=list)

    @property
    def items(self) -> list[Task]:
        return self.tasks


class FaceEdgeTaskPage(Page):
    tasks: Items[FaceEdgeTask] = Field(default_factory=list)

    @property
    def items(self) -> list[FaceEdgeTask]:
        return self.tasks


class BatchTaskPage(Page):
    batch_task_list: Items[BatchTask] = Field(default_factory=list)

    @property
    def items(self) -> list[BatchTask]:
        return self.batch_task_list


M = TypeVar("M", bound=BaseModel)


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
            transient=not_json,  # a cut body may be a dropped connection; a wrong shape is not
        ) from None
