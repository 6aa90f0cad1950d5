"""Reading a policy file: TOML, validated table by table so that every error names the rule and the key."""

from __future__ import annotations

import hashlib
import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from auditor.errors import PolicyError
from auditor.paths import portable_path
from auditor.policy.rules import RULE_SUBJECTS, Policy, Rule, Waiver

M = TypeVar("M", bound=BaseModel)
_TOP_LEVEL = {"fail_on_severity", "alpha", "rule", "waiver"}


def load_policy(path: str | Path) -> Policy:
    """Reads a policy TOML file; anything malformed is a PolicyError naming the table and key."""
    path = Path(path)
    if not path.is_file():
        raise PolicyError(f"policy file not found: {path}")
    content = path.read_bytes()
    try:
        raw = tomllib.loads(content.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise PolicyError(f"{path} is not valid TOML: {err}") from None
    # The verdict names the policy as it would on any machine: a portable path and the content's hash.
    name = path.as_posix() if not path.is_absolute() else portable_path(str(path.resolve())) or path.name
    return parse_policy(raw, source=f"{name} (sha256 {hashlib.sha256(content).hexdigest()[:12]})")


def parse_policy(raw: dict[str, Any], *, source: str) -> Policy:
    """Builds a Policy from parsed TOML (`[[rule]]` and `[[waiver]]` tables, top-level settings)."""
    unknown = sorted(set(raw) - _TOP_LEVEL)
    if unknown:
        hint = " (write one [[rule]] table per rule)" if "rules" in unknown else \
            " (write one [[waiver]] table per waiver)" if "waivers" in unknown else ""
        raise PolicyError(f"{source}: unknown key {unknown[0]!r}{hint}; known: {', '.join(sorted(_TOP_LEVEL))}")
    rules = [_rule(table, number, source) for number, table in enumerate(_tables(raw, "rule", source), start=1)]
    waivers = [_validate(Waiver, table, f"{source}: waiver {number}")
               for number, table in enumerate(_tables(raw, "waiver", source), start=1)]
    settings: dict[str, Any] = {k: raw[k] for k in ("fail_on_severity", "alpha") if k in raw}
    return _validate(Policy, {**settings, "rules": rules, "waivers": waivers, "source": source}, source)


def _tables(raw: dict[str, Any], key: str, source: str) -> list[dict[str, Any]]:
    value = raw.get(key, [])
    if isinstance(value, dict):
        raise PolicyError(f"{source}: {key!r} must be a list of tables: write [[{key}]], not [{key}]")
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise PolicyError(f"{source}: {key!r} must be a list of tables: write one [[{key}]] table each")
    return value


def _rule(table: dict[str, Any], number: int, source: str) -> Rule:
    subjects = [key for key in RULE_SUBJECTS if key in table]
    where = f"{source}: rule {number}" + (f" ({table['name']!r})" if isinstance(table.get("name"), str) else "")
    if len(subjects) != 1:
        found = f"it has {' and '.join(subjects)}" if subjects else f"its keys are {', '.join(sorted(table)) or 'none'}"
        raise PolicyError(f"{where}: a rule names exactly one of findings, metric, module_metric; {found}")
    return _validate(RULE_SUBJECTS[subjects[0]], table, where)


def _validate(model: type[M], raw: dict[str, Any], where: str) -> M:
    """`model.model_validate(raw)`, with pydantic's errors turned into one line that names the key."""
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        raise PolicyError(f"{where}: {_explain(err)}") from None


def _explain(err: ValidationError) -> str:
    problems = []
    for error in err.errors():
        key = ".".join(str(part) for part in error["loc"])
        if error["type"] == "extra_forbidden":
            problems.append(f"unknown key {key!r}")
        elif error["type"] == "missing":
            problems.append(f"missing key {key!r}")
        elif not key:  # a check across keys (model_validator): its message says which
            problems.append(str(error["msg"]).removeprefix("Value error, "))
        else:
            problems.append(f"{key!r}: {str(error['msg']).removeprefix('Value error, ')} "
                            f"(got {error.get('input')!r})")
    return "; ".join(problems)


__all__ = ["load_policy", "parse_policy"]
