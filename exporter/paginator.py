"""Complete listings: the paging strategies of a list's descriptor, over a transport.

Pages are asked `page_window` ahead (a sliding window: while one page is parsed, the next
ones are on their way) and kept as bytes (checked to be whole JSON inside each retried
request, so a cut body spends the one retry budget), then parsed into models one page at a
time, as the aggregator takes them.

Pages until a short or empty page, never trusting `count` as a total where it is "items on
this page", and asks no further than the total where it is known; stops on a repeated page
and at `max_pages`, keeping what it got. De-duplication (offset paging shifts while jobs
change) is the aggregators'.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
from collections.abc import AsyncGenerator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import structlog

from exporter.errors import ViasHTTPError, ViasResponseError
from exporter.lists.base import Identified, ItemT, ViasList
from exporter.models import Page, check_json, parse_model
from exporter.own_metrics import ProjectMetric
from exporter.transport import Transport

log = structlog.get_logger(__name__)

T = TypeVar("T")


HELD_BYTES = 8 << 20  # at most this much of a listing is held unparsed, waiting to be told


@dataclass(frozen=True, slots=True)
class PageFacts:
    """What paging takes from a page: kept from one listing to the next, so that a page
    byte for byte the one at its place last time is not parsed to take them again."""

    digest: bytes  # of the body and the page size asked for
    size: int  # items on the page
    count: int | None
    ids: int  # `_identity`: a page the server repeats has the same


def _digest(body: bytes, page_size: int) -> bytes:
    # SHA-256, not BLAKE2: OpenSSL's runs on the CPU's SHA instructions (0.44 ms for a
    # 600 kB page here, BLAKE2b 1.23 ms).
    digest = hashlib.sha256(page_size.to_bytes(8, "little"))
    digest.update(body)
    return digest.digest()


@dataclass(frozen=True, slots=True)
class ListingEnd:
    """What a listing read through `read_listing` tells the next one."""

    pages: tuple[PageFacts, ...]  # of a complete listing; () when it was cut short
    unchanged: bool  # every page byte for byte the last listing's: none was parsed


class Listing:
    """One listing's pages as paging saw them (`pages`), beside the last complete
    listing's (`last`). Pages the same as the last listing's, from the first on, are held
    unparsed; when the listing ends with every page so (it is `unchanged`), none is ever
    parsed: the lists whose data follows from the listing alone keep their last data. A
    page that differs, a listing cut short or more than HELD_BYTES held has the held pages
    parsed, in order, before anything else."""

    def __init__(self, last: Sequence[PageFacts] = ()) -> None:
        self.last = last
        self.pages: list[PageFacts] = []
        self.complete = False  # cut short (a repeated page, max_pages): no model for the next
        self.unchanged = False
        self._held: list[bytes] | None = [] if last else None  # None: no longer holding
        self._held_bytes = 0

    def hold(self, body: bytes, digest: bytes) -> PageFacts | None:
        """The facts of the page at this place in the last listing if `body` is that page
        again (then it is held), else None."""
        at = len(self.pages)
        held = self._held
        if held is None or at >= len(self.last) or self.last[at].digest != digest:
            return None
        if self._held_bytes + len(body) > HELD_BYTES:
            return None
        held.append(body)
        self._held_bytes += len(body)
        return self.last[at]

    def release(self) -> list[bytes]:
        """The held pages, to be parsed now; no more are held."""
        held, self._held = self._held or [], None
        return held

    def end(self) -> None:
        """The listing is complete: unchanged if every page was held."""
        self.complete = True
        self.unchanged = self._held is not None and len(self.pages) == len(self.last)


async def read_listing(
    transport: Transport,
    vias_list: ViasList[ItemT, Any],
    add: Callable[[list[ItemT]], None],
    last: Sequence[PageFacts] = (),
) -> ListingEnd:
    """Hand the items of each page of one complete listing to `add`, in order (letting
    scrapes in between pages); `last` is what the previous listing's end said of its pages,
    and the end of this one is returned for the next. Items go one way, the page facts the
    other, each once."""
    listing = Listing(last)
    async with contextlib.aclosing(pages(transport, vias_list, listing)) as listed:
        async for items in listed:
            # Scrapes (and the pages asked ahead) go on between parsing a page and adding it
            # up, and between pages: the loop is never held for more than one of them.
            await asyncio.sleep(0)
            add(items)
            await asyncio.sleep(0)
    return ListingEnd(tuple(listing.pages) if listing.complete else (), listing.unchanged)


async def pages(
    transport: Transport, vias_list: ViasList[ItemT, Any], listing: Listing | None = None
) -> AsyncGenerator[list[ItemT]]:
    """Yield the items of each page of one complete listing, in order. A refusal of the
    first page may be read another way, as the list's paging says (counted): a 400 asks
    again, once, with the fallback page size; a 404 is an empty listing. `listing` (from
    `read_listing`) learns the listing's pages and whether it repeats its last one."""
    paging = vias_list.paging
    page_size, started = paging.page_size, False
    while True:
        try:
            one_size = _pages(transport, vias_list, page_size, listing or Listing())
            async with contextlib.aclosing(one_size):  # its requests ahead end with it
                async for items in one_size:
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
    transport: Transport, vias_list: ViasList[ItemT, Any], page_size: int, listing: Listing
) -> AsyncGenerator[list[ItemT]]:
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
    # Only the lists that may skip a repeated listing pay for the digests.
    remember = vias_list.same_listing_same_data
    listed = 0
    previous_ids: int | None = None
    last_page = max_pages  # the last page to ask for: lowered once a total is known
    ahead: dict[int, asyncio.Task[bytes]] = {}  # page number: its request, in flight

    def ask(number: int) -> asyncio.Task[bytes]:
        params = {
            **paging.extra_params,
            paging.page_param: str(number),
            paging.size_param: str(page_size),
        }
        return asyncio.create_task(transport.get(vias_list.endpoint, params, check))

    try:
        for number in range(1, max_pages + 1):
            # A sliding window: while a page is parsed the next ones are on their way (the
            # first page alone: it may say the total, or be refused for its page size).
            window = page_window if number > 1 else 1
            for later in range(number, min(number + window, last_page + 1)):
                if later not in ahead:
                    ahead[later] = ask(later)
            body = await ahead.pop(number)
            digest = _digest(body, page_size) if remember else b""
            facts, items = listing.hold(body, digest), []
            if facts is None:  # a page that differs: the held ones are parsed first
                for held in _parsed(vias_list, listing.release()):
                    yield held
                page = _parse(vias_list, body)
                items = page.items
                facts = PageFacts(digest, len(items), page.count, _identity(items, body))
            del body  # let go once parsed (or held)
            listing.pages.append(facts)
            # Never a held page: held pages follow the last complete listing's.
            if facts.size and facts.ids == previous_ids:
                _stopped(transport, vias_list, "repeated_page")
                break
            if items:
                yield items
            previous_ids = facts.ids
            listed += facts.size
            # A page longer than asked for means the server ignores paging.
            because = f"a page of {facts.size} items" if facts.size != page_size else ""
            if not because and paging.end == "total" and facts.count is not None:
                total = _total(transport, vias_list, facts.count, listed)
                reached = total is not None and listed >= total
                because = f"the total of {total} reached" if reached else ""
                # Ask no further than the total says (a total not believed: as far as any).
                more = max_pages if total is None else math.ceil((total - listed) / page_size)
                last_page = number + max(1, more)
            if because:
                listing.end()
                if not listing.unchanged:
                    for held in _parsed(vias_list, listing.release()):
                        yield held
                _complete(transport, vias_list, listed, because, unchanged=listing.unchanged)
                break
        else:
            for held in _parsed(vias_list, listing.release()):
                yield held
            _stopped(transport, vias_list, "page_cap")
        # The requests still out are answered, not cut: cancelling a request sent closes
        # its connection, and the next poll would open it again.
        await asyncio.gather(*ahead.values(), return_exceptions=True)
    finally:
        _cancel(ahead.values())  # a failure, or a reader that gave up


def _identity(items: Sequence[Identified], body: bytes) -> int:
    """What a page the server repeats has the same: its items' ids in order, or its body
    where an item has no id (pages of id-less items are otherwise all alike)."""
    ids = tuple(item.id for item in items)
    return hash(body) if None in ids else hash(ids)


def _total(
    transport: Transport, vias_list: ViasList[Any, Any], count: int, listed: int
) -> int | None:
    """The listing's total as `count` says, checked: a negative one is a bad answer; one
    below the items of a full page already listed is not believed (the listing goes on
    to a short page) rather than ending it early with what the pages so far held."""
    if count < 0:
        raise ViasResponseError(
            f"impossible count {count} from {vias_list.endpoint}", endpoint=vias_list.endpoint
        )
    if count < listed:
        log.warning(
            "listing total below the items listed, paging on",
            project_id=transport.project_id,
            source=vias_list.name,
            count=count,
            listed=listed,
        )
        return None
    return count


def _parsed(vias_list: ViasList[ItemT, Any], bodies: list[bytes]) -> Iterator[list[ItemT]]:
    for body in bodies:
        if items := _parse(vias_list, body).items:
            yield items


def _parse(vias_list: ViasList[ItemT, Any], body: bytes) -> Page[ItemT]:
    return parse_model(vias_list.page_model, body, vias_list.endpoint)


def _cancel(requests: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel the requests a listing ended without; the failures of those that ended are
    taken (asyncio would log them as never retrieved)."""
    for request in requests:
        if request.done() and not request.cancelled():
            request.exception()
        request.cancel()


def _complete(
    transport: Transport,
    vias_list: ViasList[Any, Any],
    listed: int,
    because: str,
    *,
    unchanged: bool,
) -> None:
    log.debug(
        "listing complete",
        project_id=transport.project_id,
        source=vias_list.name,
        items=listed,
        because=because,
        unchanged=unchanged,
    )


def _stopped(transport: Transport, vias_list: ViasList[Any, Any], reason: str) -> None:
    stops = ProjectMetric.vias_pagination_stops
    transport.telemetry.record(transport.project_id, stops, vias_list.name, reason)
    log.warning(
        "listing cut short", project_id=transport.project_id, source=vias_list.name, reason=reason
    )


def _fell_back(
    transport: Transport, vias_list: ViasList[Any, Any], reason: str, error: ViasHTTPError
) -> None:
    fallbacks = ProjectMetric.vias_paging_fallbacks
    transport.telemetry.record(transport.project_id, fallbacks, vias_list.name, reason)
    log.warning(
        "listing refused, read another way",
        project_id=transport.project_id,
        source=vias_list.name,
        reason=reason,
        error=str(error),
    )
