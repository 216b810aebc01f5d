"""The one exception tree of Sovereign.

Everything the product raises on purpose derives from :class:`SovereignError`; the CLI catches
that base once, prints the message (and hint) and exits with ``exit_code``; with
``SOVEREIGN_DEBUG=1`` it re-raises instead, so the traceback behind the error shows. Anything
else is a bug: the CLI prints its JSON error document under ``--json`` and re-raises it, so a
bug always ends in a traceback (``orchestrator/cli/app.py``, ``_main``).

    SovereignError                      exit 1
    ├── UsageError                      a command-line argument is wrong
    │   └── EngineUnavailableError      --engine pulumi without the Pulumi CLI (or passphrase)
    ├── FleetError                      the fleet is invalid; carries every Problem found
    ├── SignatureError                  a directive signature is missing or does not verify
    ├── RefusedError                    an interlock refused the plan (min_sites_per_model)
    ├── StateError                      the state store cannot be read or written
    │   ├── StateLockedError            exit 4: another run holds the lock
    │   ├── LeaseLostError              this run lost the lock it held (taken over, expired)
    │   └── StalePlanError              a saved plan was made from another state serial
    ├── PartialApplyError               exit 3: apply finished with some sites failed
    ├── AuditError                      the audit chain is broken or cannot be appended to
    └── ProviderError                   a provider failed; no SDK exception escapes a provider
        ├── TransientProviderError      throttling, 5xx, timeouts: retried with backoff
        └── PermanentProviderError      access denied, invalid request: not retried
            └── UnknownProviderError    a site names a provider that is not registered
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Problem:
    """One validation problem, located as precisely as the input allows."""

    file: str
    line: int | None
    field: str
    message: str

    def render(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} {self.message}"

    def to_json(self) -> dict[str, object]:
        return {"file": self.file, "line": self.line, "field": self.field, "message": self.message}


class SovereignError(Exception):
    """Base of every error Sovereign raises on purpose."""

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(SovereignError):
    """A command-line argument or option value is wrong."""


class EngineUnavailableError(UsageError):
    """The requested engine cannot run here (e.g. the Pulumi CLI is not installed)."""


class FleetError(SovereignError):
    """The fleet is invalid. ``problems`` lists every problem found in one pass."""

    def __init__(self, problems: list[Problem] | tuple[Problem, ...]) -> None:
        self.problems = tuple(problems)
        n = len(self.problems)
        head = f"the fleet is invalid ({n} problem{'s' if n != 1 else ''})"
        super().__init__("\n".join([head, *(p.render() for p in self.problems)]))


class SignatureError(SovereignError):
    """A directive signature is missing, malformed or does not verify."""


class RefusedError(SovereignError):
    """An interlock refused the operation; the message says how to override, if one exists."""


class StateError(SovereignError):
    """The state store cannot be read or written."""


class StateLockedError(StateError):
    """Another run holds the state lock."""

    exit_code = 4


class LeaseLostError(StateError):
    """This run no longer holds the state lock it took: it must stop writing at once."""


class StalePlanError(StateError):
    """A saved plan no longer matches the state it was made from."""


class PartialApplyError(SovereignError):
    """Apply finished, but some sites failed (the rest applied and was recorded)."""

    exit_code = 3


class AuditError(SovereignError):
    """The audit chain is broken or could not be appended to (apply stops: fail closed)."""


class ProviderError(SovereignError):
    """A provider operation failed."""


class TransientProviderError(ProviderError):
    """A provider failure worth retrying (throttling, 5xx, connection errors, timeouts)."""


class PermanentProviderError(ProviderError):
    """A provider failure that retrying will not fix (access denied, invalid request)."""


class UnknownProviderError(PermanentProviderError):
    """A site names a provider that is not in the registry."""
