"""What the configuration allows, apart from its models: the bounds on what the API may
send, project ids that stay in their place in a URL path, and YAML errors that never quote
the file (it holds secrets), secrets read from files."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import AfterValidator, SecretStr

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


def read_secret(path: Path) -> SecretStr:
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
        read_secret(path)  # read again when the configuration is complete
    return path


SecretFile = Annotated[Path | None, AfterValidator(_readable_secret_file)]
