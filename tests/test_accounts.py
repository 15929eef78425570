"""Which targets share an account's limits (`exporter.accounts`).

| change to the code (tried, seen red) | failing test |
|---|---|
| `account_key`: the token itself in the key | test_targets_share_limits_only_with_their_own_... |
| `account_key`: scope ignored | test_scope_project_gives_each_target_its_own_limits |
| `Accounts.keep_only`: keeps everything | test_an_account_no_target_uses_is_forgotten |
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from exporter.accounts import Accounts, account_key
from exporter.lists import REGISTRY
from exporter.settings import GlobalConfig, TargetConfig
from tests.support import SECRETS, TOKEN, target

URL = "http://127.0.0.1:1"


def targets(**by_project: str) -> list[TargetConfig]:
    return [
        TargetConfig.model_validate(target(URL, p, auth=a), context=REGISTRY)
        for p, a in by_project.items()
    ]


def test_targets_share_limits_only_with_their_own_credentials() -> None:
    t1, t2, k1, k2, w1 = targets(t1="token", t2="token", k1="aksk", k2="aksk", w1="password")
    accounts = Accounts(GlobalConfig())
    assert accounts.of(t1) is accounts.of(t2)
    assert accounts.of(k1) is accounts.of(k2)
    assert len({id(accounts.of(t)) for t in (t1, k1, w1)}) == 3
    assert TOKEN not in repr(account_key(t1, "account"))  # kept as a digest only


def test_scope_project_gives_each_target_its_own_limits() -> None:
    k1, k2 = targets(k1="aksk", k2="aksk")
    accounts = Accounts(GlobalConfig(rate_limit_scope="project"))
    assert accounts.of(k1) is not accounts.of(k2)


def test_an_account_no_target_uses_is_forgotten() -> None:
    t1, k1 = targets(t1="token", k1="aksk")
    accounts = Accounts(GlobalConfig())
    token_account = accounts.of(t1)
    accounts.of(k1)
    accounts.keep_only([t1])
    assert len(accounts) == 1 and accounts.of(t1) is token_account


def test_an_accounts_label_is_its_configured_name_or_never_a_secret() -> None:
    t1, k1, w1 = targets(t1="token", k1="aksk", w1="password")
    accounts = Accounts(GlobalConfig())
    labels = [accounts.of(t).plan.account for t in (t1, k1, w1)]
    assert labels == [
        f"token:{account_key(t1, 'account')[2][:12]}@127.0.0.1",
        f"{k1.access_key}@127.0.0.1",
        f"{w1.domain_name}/{w1.username}@127.0.0.1",
    ]
    assert not any(secret in label for label in labels for secret in SECRETS)
    named = TargetConfig.model_validate(
        target(URL, "n1", auth="aksk", account_name="prod-cn4"), context=REGISTRY
    )
    assert Accounts(GlobalConfig()).of(named).plan.account == "prod-cn4"


def test_a_bad_account_name_is_refused_naming_the_field() -> None:
    with pytest.raises(ValidationError) as caught:
        TargetConfig.model_validate(
            target(URL, "n1", account_name="prod account"), context=REGISTRY
        )
    assert "account_name" in str(caught.value)
