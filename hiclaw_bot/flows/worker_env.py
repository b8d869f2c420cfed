"""The one rule for a worker's ``--env``: chat, the API and team create check it, for create and update.

A name must look like an ordinary variable (letters, digits, ``_``), and must not be one that
changes how an interpreter, loader or shell behaves (:mod:`backends.envrules`), nor one of ours
(``HICLAW_*``: the bot sets those, and a worker trusts them), nor one an admin added in
``worker_env.deny``. Values are bounded in size and may not hold NUL. The refusal names the variable.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from backends.envrules import DENIED_NAMES, DENIED_PREFIXES, denied_by
from hiclaw_bot.config import WorkerEnvConfig

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
OURS = ("HICLAW_",)


def refusal(env: Mapping[str, object], settings: WorkerEnvConfig) -> str | None:
    """Why ``env`` may not be given to a worker, naming the variable; None when it may."""
    if len(env) > settings.max_vars:
        return f"at most {settings.max_vars} environment variables may be set (got {len(env)})"
    prefixes, names = _extended(settings)
    for name, value in env.items():
        if not isinstance(name, str) or NAME.fullmatch(name) is None:
            return (f"`{str(name)[:64]}` is not a valid variable name: use letters, digits and `_`, "
                    f"not starting with a digit, at most 128 characters")
        rule = denied_by(name, prefixes, names)
        if rule is not None:
            return f"`{name}` may not be set: it is on the deny list ({rule}) of variables that change " \
                   f"how a program, shell or the bot's agent behaves"
        if not isinstance(value, str):
            return f"`{name}` must be text"
        if len(value) > settings.max_value_chars:
            return f"the value of `{name}` is {len(value)} characters long; at most {settings.max_value_chars}"
        if "\x00" in value:
            return f"the value of `{name}` holds a NUL character"
    return None


def _extended(settings: WorkerEnvConfig) -> tuple[tuple[str, ...], frozenset[str]]:
    prefixes = [*DENIED_PREFIXES, *OURS]
    names = set(DENIED_NAMES)
    for entry in settings.deny:
        if entry.endswith("*"):
            prefixes.append(entry[:-1].upper())
        else:
            names.add(entry.upper())
    return tuple(prefixes), frozenset(names)
