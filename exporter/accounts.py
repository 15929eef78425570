"""What targets sharing credentials share: the API gateway's request-rate limit, and the
pauses after an access key or a password login was refused, apply to the whole account.

Without this, 500 projects of one account would each send at the full rate (500 times the
gateway's budget), and a revoked access key or a changed password would be tried by every
project at once: Huawei locks a key or user after 5 refused authentications in a row.
A static token is scoped to one project, and a 403 may concern one project's
permissions: those pauses stay per project.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from exporter.auth import CoolDown
from exporter.budget import AccountPlan
from exporter.pacing import RateLimiter
from exporter.settings import GlobalConfig, TargetConfig

AccountKey = tuple[str, ...]


def account_key(target: TargetConfig, scope: str) -> AccountKey:
    """Who the API gateway counts a target's requests against: its credentials (a token
    only by its digest) at its endpoint; with scope `project`, each target alone."""
    if scope == "project":
        return ("project", target.api_url, target.project_id)
    if target.auth_token is not None:
        digest = hashlib.sha256(target.auth_token.get_secret_value().encode()).hexdigest()
        return ("token", target.api_url, digest)
    if target.access_key is not None:
        return ("aksk", target.api_url, target.access_key)
    assert target.username is not None and target.domain_name is not None
    return ("password", target.api_url, target.iam_url, target.domain_name, target.username)


def account_label(key: AccountKey) -> str:
    """The account's name in metrics, logs and the landing page, never a secret: the
    access-key id, the user name, a token's digest prefix, or the project (scope
    `project`); with the endpoint's host, as one key may be used in several regions."""
    kind, api_url, *rest = key
    host = urlsplit(api_url).hostname or api_url
    if kind == "token":
        name = f"token:{rest[0][:12]}"
    elif kind == "password":
        _, domain, user = rest
        name = f"{domain}/{user}"
    else:
        name = rest[0]
    return f"{name}@{host}"


@dataclass(slots=True)
class Account:
    """The limits one account's targets share."""

    plan: AccountPlan  # the request-rate budget, polls in flight, effective intervals
    signing_cool_down: CoolDown  # VIAS answered 401 to a request signed with the access key
    login_cool_down: CoolDown  # IAM refused the password login

    @property
    def limiter(self) -> RateLimiter:
        return self.plan.limiter


class Accounts:
    """One `Account` per key, created on first use and forgotten when no target uses it.
    Each replica's share of an account's budget is `rate_limit_per_second / shards`."""

    def __init__(self, settings: GlobalConfig, shards: int = 1) -> None:
        self._settings = settings
        self._shards = shards
        self._accounts: dict[AccountKey, Account] = {}

    def of(self, target: TargetConfig) -> Account:
        key = account_key(target, self._settings.rate_limit_scope)
        account = self._accounts.get(key)
        if account is None:
            account = Account(
                plan=AccountPlan(
                    target.account_name or account_label(key),
                    self._settings.rate_limit_per_second,
                    shards=self._shards,
                    polls_in_flight=self._settings.max_polls_in_flight,
                ),
                signing_cool_down=CoolDown.from_settings(self._settings),
                login_cool_down=CoolDown.from_settings(self._settings, clock=time.time),
            )
            self._accounts[key] = account
        return account

    def keep_only(self, targets: Iterable[TargetConfig]) -> None:
        scope = self._settings.rate_limit_scope
        used = {account_key(target, scope) for target in targets}
        self._accounts = {key: a for key, a in self._accounts.items() if key in used}

    def plans(self) -> list[AccountPlan]:
        return [account.plan for account in self._accounts.values()]

    def __len__(self) -> int:
        return len(self._accounts)
