"""What the configuration allows, apart from its models: the bounds on what the API may
send, project ids that stay in their place in a URL path, list names checked against the
registry handed in, secret files, and YAML errors that never quote the file (it holds
secrets)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Protocol

import yaml
from pydantic import AfterValidator, BeforeValidator, SecretStr, ValidationInfo
from pydantic_settings import NoDecode

# The largest answer read: ~25 times the largest page seen (1,000 jobs, ~600 kB).
DEFAULT_MAX_RESPONSE_BYTES = 16 << 20
# Label values from the API are cut to this many bytes (UTF-8): a Prometheus with
# `label_value_length_limit` rejects a whole scrape for one longer value.
DEFAULT_LABEL_VALUE_MAX_BYTES = 1024

# Huawei Cloud project ids are 32 hex characters; other short ids (the simulator's `p1`,
# a test double's `demo-project`) are accepted as long as they cannot leave their place in
# a URL path: letters, digits, `-` and `_`, starting with a letter or digit, at most 64.
_PROJECT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
PROJECT_ID_RULE = (
    "a project id is 32 hex characters, or up to 64 letters, digits, `-` and `_` "
    "starting with a letter or digit"
)


def valid_project_id(project_id: str) -> bool:
    return _PROJECT_ID.fullmatch(project_id) is not None


def project_id(value: str) -> str:
    """`value` if it is a valid project id; else the error naming the rule."""
    if not valid_project_id(value):
        raise ValueError(PROJECT_ID_RULE)
    return value


ProjectId = Annotated[str, AfterValidator(project_id)]


class ListChoice(Protocol):
    """What the configuration reads of a list (the registry's `ViasList` is one)."""

    @property
    def polled_by_default(self) -> bool: ...


# Every list a configuration may name, in registry order: `exporter.lists.REGISTRY`, given
# as the validation context by whoever validates (the registry sits beside settings).
ListChoices = Mapping[str, ListChoice]


def _list_choices(info: ValidationInfo) -> ListChoices:
    if not isinstance(info.context, Mapping):  # a programming error, not a config one
        raise TypeError("list names are checked against the registry: pass context=REGISTRY")
    return info.context


def _known_list(name: str, info: ValidationInfo) -> str:
    choices = _list_choices(info)
    if name not in choices:
        raise ValueError(f"unknown source; choose from {', '.join(choices)}")
    return name


def _comma_list(raw: object) -> object:
    if isinstance(raw, str):
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    return raw


Source = Annotated[str, AfterValidator(_known_list)]
Sources = Annotated[tuple[Source, ...], BeforeValidator(_comma_list), NoDecode]


def default_sources(data: Any, info: ValidationInfo) -> Any:
    """A model's raw `data` with `sources`, when left out, the lists polled by default."""
    if isinstance(data, dict) and "sources" not in data:
        choices = _list_choices(info)
        defaults = tuple(name for name, choice in choices.items() if choice.polled_by_default)
        return {**data, "sources": defaults}
    return data


def _read_secret(path: Path) -> SecretStr:
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except OSError as error:
        # The path is where the secret lives, not the secret: naming it is what helps.
        raise ValueError(f"cannot read secret file {path}: {error.strerror}") from None
    if not secret:
        raise ValueError("secret file is empty")
    return SecretStr(secret)


def _readable_secret_file(path: Path | None) -> Path | None:
    if path is not None:
        _read_secret(path)  # read again when the configuration is complete
    return path


SecretFile = Annotated[Path | None, AfterValidator(_readable_secret_file)]


def read_secret_files(config: object, *secrets: str) -> None:
    """Each `<secret>_file` of a configuration model read into `<secret>` (once the model
    is complete); a secret is given one way only."""
    for secret in secrets:
        file = f"{secret}_file"
        path = getattr(config, file)
        if path is not None:
            if getattr(config, secret) is not None:
                raise ValueError(f"set {secret} or {file}, not both")
            setattr(config, secret, _read_secret(path))


_SETTINGS_FIELD = re.compile(r'field "(\w+)"')


def env_value_problem(error: Exception, prefix: str) -> str:
    """A VIAS_* variable pydantic-settings could not decode (JSON for a mapping such as
    `VIAS_POLL_INTERVALS`), named without its value."""
    field = _SETTINGS_FIELD.search(str(error))
    variable = prefix + field.group(1).upper() if field else f"a {prefix}* variable"
    return f'{variable}: not valid JSON (expected an object such as {{"video_groups": 600}})'


def yaml_problem(error: yaml.YAMLError) -> str:
    """Where and what is wrong with a YAML file, never an excerpt of it: the parser's own
    message quotes the offending line, which may hold a secret."""
    mark = getattr(error, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    problem = _unquoted(getattr(error, "problem", None) or "not valid YAML")
    return f"malformed YAML{where}: {problem}"


def _unquoted(problem: str) -> str:
    """The parser's problem up to its first quote: what it quotes is text of the file (a
    tag `!...`, an alias `*...`, a character), which may be a secret."""
    quotes = [at for at in (problem.find("'"), problem.find('"')) if at >= 0]
    if not quotes:
        return problem
    return problem[: min(quotes)].rstrip() + " (the text itself is not shown)"
