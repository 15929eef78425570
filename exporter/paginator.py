"""Complete listings: the paging strategies of a list's descriptor, over a transport.

A window of pages is fetched at once and kept as bytes (checked to be whole JSON inside
each retried request, so a cut body spends the one retry budget), then parsed into models
one page at a time, as the aggregator takes them.

Pages until a short or empty page, never trusting `count` as a total where it is "items on
this page"; fetches a window of pages at once where the total is unknown, and no further
than the total where it is known; stops on a repeated page and at `max_pages`, keeping
what it got. De-duplication (offset paging shifts while jobs change) is the aggregators'.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Coroutine, Sequence
from functools import partial
from typing import Any, TypeVar

import structlog

from exporter.errors import ViasHTTPError
from exporter.lists.base import ItemT, ViasList
from exporter.models import Page, check_json, parse_model
from exporter.transport import Transport

log = structlog.get_logger(__name__)

T = TypeVar("T")


async def pages(
    transport: Transport, vias_list: ViasList[ItemT, Any]
) -> AsyncIterator[list[ItemT]]:
    """Yield the items of each page of one complete listing, in order. A refusal of the
    first page may be read another way, as the list's paging says (counted): a 400 asks
    again, once, with the fallback page size; a 404 is an empty listing."""
    paging = vias_list.paging
    page_size, started = paging.page_size, False
    while True:
        try:
            async for items in _pages(transport, vias_list, page_size):
                started = True
                yield items
            return
        except ViasHTTPError as error:
            if started:
                raise
            if error.status == 404 and paging.absent_is_empty:
                _fell_back(transport, vias_list, "not_found", error)
                return
            fallback = paging.fallback_page_size
            if error.status != 400 or not fallback or page_size == fallback:
                raise
            _fell_back(transport, vias_list, "page_bound", error)
            page_size = fallback


async def _pages(
    transport: Transport, vias_list: ViasList[ItemT, Any], page_size: int
) -> AsyncIterator[list[ItemT]]:
    paging = vias_list.paging
    check = partial(check_json, endpoint=vias_list.endpoint)
    if paging.end == "unpaged":
        page = _parse(
            vias_list, await transport.get(vias_list.endpoint, paging.extra_params, check)
        )
        if page.items:
            yield page.items
        return
    max_pages, page_window = transport.settings.max_pages, transport.settings.page_window
    listed = 0
    previous_ids: list[str | None] | None = None
    next_page, window, total = 1, 1, None
    while next_page <= max_pages:
        numbers = range(next_page, min(next_page + window, max_pages + 1))
        bodies = await _all(
            [
                transport.get(
                    vias_list.endpoint,
                    {
                        **paging.extra_params,
                        paging.page_param: str(number),
                        paging.size_param: str(page_size),
                    },
                    check,
                )
                for number in numbers
            ]
        )
        while bodies:
            page = _parse(vias_list, bodies.pop(0))  # each body is let go once parsed
            items = page.items
            ids = [item.id for item in items]
            if items and ids == previous_ids:
                _stopped(transport, vias_list, "repeated_page")
                return
            previous_ids = ids
            listed += len(items)
            if items:
                yield items
            # A page longer than asked for means the server ignores paging.
            if len(items) != page_size:
                _complete(transport, vias_list, listed, f"a page of {len(items)} items")
                return
            if paging.end == "total" and page.count is not None:
                total = page.count
                if listed >= total:
                    _complete(transport, vias_list, listed, f"the total of {total} reached")
                    return
        next_page += len(numbers)
        window = page_window
        if total is not None:  # fetch no further than the total says
            window = max(1, min(window, math.ceil((total - listed) / page_size)))
        log.debug(
            "listing goes on",
            project_id=transport.project_id,
            source=vias_list.name,
            listed=listed,
            next_pages=f"{next_page}-{next_page + window - 1}",
        )
    _stopped(transport, vias_list, "page_cap")


def _parse(vias_list: ViasList[ItemT, Any], body: bytes) -> Page[ItemT]:
    return parse_model(vias_list.page_model, body, vias_list.endpoint)


async def _all(calls: Sequence[Coroutine[Any, Any, T]]) -> list[T]:
    """Run concurrently; on the first failure the rest are cancelled and it is raised."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(call) for call in calls]
    except BaseExceptionGroup as failures:
        raise failures.exceptions[0] from None
    return [task.result() for task in tasks]


def _complete(
    transport: Transport, vias_list: ViasList[Any, Any], listed: int, because: str
) -> None:
    log.debug(
        "listing complete",
        project_id=transport.project_id,
        source=vias_list.name,
        items=listed,
        because=because,
    )


def _stopped(transport: Transport, vias_list: ViasList[Any, Any], reason: str) -> None:
    transport.telemetry.count_pagination_stop(transport.project_id, vias_list.name, reason)
    log.warning(
        "listing cut short", project_id=transport.project_id, source=vias_list.name, reason=reason
    )


def _fell_back(
    transport: Transport, vias_list: ViasList[Any, Any], reason: str, error: ViasHTTPError
) -> None:
    transport.telemetry.count_paging_fallback(transport.project_id, vias_list.name, reason)
    log.warning(
        "listing refused, read another way",
        project_id=transport.project_id,
        source=vias_list.name,
        reason=reason,
        error=str(error),
    )
