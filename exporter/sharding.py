"""Sharding across replicas, the kube-state-metrics way: a replica polls only the projects
whose jump consistent hash falls to its shard, so going from N to N+1 shards moves about
1/(N+1) of the projects and leaves the rest where they are."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

_HOSTNAME_ORDINAL = re.compile(r"-(\d+)$")  # a StatefulSet pod: <name>-<ordinal>


def jump_hash(key: int, buckets: int) -> int:
    """Lamping & Veach's jump consistent hash: the bucket of `key` among `buckets`."""
    bucket, jump = -1, 0
    while jump < buckets:
        bucket = jump
        key = (key * 2862933555777941757 + 1) & 0xFFFF_FFFF_FFFF_FFFF
        jump = int((bucket + 1) * ((1 << 31) / ((key >> 33) + 1)))
    return bucket


def project_key(project_id: str) -> int:
    """A stable 64-bit key (Python's hash() changes between processes)."""
    return int.from_bytes(hashlib.sha256(project_id.encode()).digest()[:8], "big")


@dataclass(frozen=True, slots=True)
class Sharding:
    shard: int = 0
    total: int = 1

    def __post_init__(self) -> None:
        if self.total < 1 or not 0 <= self.shard < self.total:
            raise ValueError(f"shard {self.shard} is not one of {self.total} shard(s)")

    def owns(self, project_id: str) -> bool:
        return jump_hash(project_key(project_id), self.total) == self.shard


def shard_ordinal(value: str, hostname: str) -> int:
    """`--shard`: a number, or `auto` for the ordinal a StatefulSet puts at the end of the
    pod's hostname (`vias-exporter-2` is shard 2)."""
    if value != "auto":
        return int(value)
    match = _HOSTNAME_ORDINAL.search(hostname)
    if match is None:
        raise ValueError(f"--shard auto: the hostname {hostname!r} ends in no -<ordinal>")
    return int(match.group(1))
