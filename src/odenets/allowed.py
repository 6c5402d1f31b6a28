"""The allowed values of config keys, declared by the code that reads them, and the one check that enforces them.

Each config group's owner declares its keys' ranges beside its code (a model family's module-level `ALLOWED`, a
data module's class attribute `ALLOWED`, the top-level keys in `odenets.run.validation`); `check` turns the first
value outside its range into one `ConfigError` line naming the key, the value and what is allowed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from odenets.errors import ConfigError


@dataclass(frozen=True)
class Allowed:
    """A predicate on a key's value and what it allows, in words (`expected ...`)."""

    test: Callable[[Any], bool]
    text: str

    def __call__(self, value: Any) -> bool:
        return self.test(value)


def integer(lo: int, hi: float = float("inf"), text: str | None = None) -> Allowed:
    return Allowed(lambda v: isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi,
                   text or f"an integer >= {lo}")


def number(test: Callable[[float], bool], text: str) -> Allowed:
    return Allowed(lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and test(v), text)


def optional(allowed: Allowed, text: str | None = None) -> Allowed:
    return Allowed(lambda v: v is None or allowed(v), text or f"null or {allowed.text}")


def one_of(*choices: str) -> Allowed:
    return Allowed(lambda v: v in choices, ", ".join(choices[:-1]) + f" or {choices[-1]}")


BOOL = Allowed(lambda v: isinstance(v, bool), "true or false")


def violation(key: str, value: Any, allowed: Allowed) -> str | None:
    """The one-line complaint about `key=value`, or None when `allowed` allows it."""
    return None if allowed(value) else f"{key}={value!r} is not allowed; expected {allowed.text}"


def check(values: Mapping[str, Any], allowed: Mapping[str, Allowed], prefix: str = "") -> None:
    """Raise ConfigError for the first key of `allowed` (in its order) whose value in `values` it does not allow."""
    for key, rule in allowed.items():
        if key in values and (why := violation(prefix + key, values[key], rule)):
            raise ConfigError(why)
