"""The person a request is made for, as far as the law cares."""

from __future__ import annotations

from dataclasses import dataclass


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
            residency.upper(), frozenset(n.upper() for n in nationalities), frozenset(groups)
        )

    def to_json(self) -> dict[str, object]:
        return {
            "residency": self.residency,
            "nationalities": sorted(self.nationalities),
            "groups": sorted(self.groups),
        }
