"""The further calls a list's data needs after its listing (job details for error codes,
edge-pool details for nodes): the list declares them (`ViasList.details`), this module
makes them through the project's transport, at most `detail_calls_per_poll` a poll.

A failed call never fails the poll: it is counted with the other requests, logged, and
handed to the list as "no answer" (None); a 404 as `GONE`. While the endpoint or the
account is paused (a refusal), nothing more is asked this poll: nothing would be sent.
"""

from __future__ import annotations

from functools import partial
from itertools import islice
from typing import Any

import structlog

from exporter.errors import ViasAuthCoolDown, ViasError, ViasHTTPError
from exporter.lists.base import GONE, DataT, DetailAnswer, Details
from exporter.models import parse_model
from exporter.transport import Transport

log = structlog.get_logger(__name__)


async def with_details(
    transport: Transport,
    details: Details[DataT, Any],
    data: DataT,
    previous: DataT | None,
    budget: int,
) -> DataT:
    """`data` completed by the answers to the first `budget` calls it wants."""
    parse = partial(parse_model, details.model, endpoint=details.endpoint)
    answers: dict[str, DetailAnswer[Any]] = {}
    for object_id in islice(details.wanted(data, previous), max(0, budget)):
        try:
            answers[object_id] = await transport.get(
                details.endpoint, {}, parse, **{details.path_field: object_id}
            )
        except ViasError as error:
            gone = isinstance(error, ViasHTTPError) and error.status == 404
            answers[object_id] = GONE if gone else None
            log.info(
                "details unavailable",
                project_id=transport.project_id,
                endpoint=details.endpoint,
                object_id=object_id,
                reason=error.reason,
            )
            if isinstance(error, ViasAuthCoolDown):
                break
    return details.complete(data, previous, answers)
