"""The person a request is made for, as far as the law cares."""

from __future__ import annotations

from dataclasses import dataclass

# A residency or nationality that no predicate of the fleet names (a class of principals, in
# impact and coverage): never a real ISO code.
OTHER = "*"


def audience_label(nationalities: tuple[str, ...], groups: tuple[str, ...] = ()) -> str:
    """The one name of a class of principals, as ``impact``, ``report`` and ``plan --markdown``
    print it: ``unknown nationality``, ``other nationality`` (``(OTHER,)``) or ``DE/FR national``,
    then ``(group staff)`` when the class carries groups."""
    if not nationalities:
        who = "unknown nationality"
    elif nationalities == (OTHER,):
        who = "other nationality"
    else:
        who = "/".join(nationalities) + " national"
    return who + (f" (group {', '.join(groups)})" if groups else "")


@dataclass(frozen=True, slots=True)
class Principal:
    """``residency`` is where they are located (required); no nationalities means unknown."""

    residency: str
    nationalities: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()

    @classmethod
    def of(
        cls,
        residency: str,
        nationalities: tuple[str, ...] | list[str] = (),
        groups: tuple[str, ...] | list[str] = (),
    ) -> Principal:
        return cls(
            _upper_ascii(residency),
            frozenset(_upper_ascii(n) for n in nationalities),
            frozenset(groups),
        )

    def to_json(self) -> dict[str, object]:
        return {
            "residency": self.residency,
            "nationalities": sorted(self.nationalities),
            "groups": sorted(self.groups),
        }


_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _upper_ascii(code: str) -> str:
    """Upper case for ASCII letters only: ``str.upper()`` would turn ``"uſ"`` (long s) into
    ``"US"``; here it stays a code no jurisdiction lists (orchestrator.fleet.countries checks
    codes strictly before they get here)."""
    return code.translate(_UPPER)
