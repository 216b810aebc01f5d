"""Guarantees a fleet can or cannot keep: ``min_sites_per_model`` shortfalls and site capacity.

docs/planning.md ("The interlock") gives the interlock the meaning of a Kubernetes
PodDisruptionBudget: it guards what a plan takes away. A model that a jurisdiction lists but that
cannot (or does not yet) run at enough of its sites is a *shortfall*: never a reason to refuse a
plan by itself, but something ``plan``, ``status`` and ``validate`` report, naming the rule that
stands in the way at each site (export rules of the origin, residency, a withdraw, too few sites, or
not deployed yet).

Capacity is configuration: a site whose jurisdiction lists more placeable models than the site
can hold is a fleet error (``validate``), named by site, file and line, before any plan.
Pure: fleet values in, records out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from orchestrator.errors import Problem
from orchestrator.fleet.model import Directive, Fleet
from orchestrator.fleet.yamlsource import parse_yaml
from orchestrator.planning.plan import Blocker, Shortfall
from orchestrator.policy.epochs import in_force
from orchestrator.policy.rules import export_allowed, reachable, withdrawals

MIN_SITES = "min_sites_per_model"
CAPACITY = "capacity"

# Blocker rules (the reason a model is missing from one site, or from the jurisdiction).
EXPORT = "export"
RESIDENCY = "residency"
WITHDRAWN = "withdrawn"
TOO_FEW_SITES = "sites"
NOT_DEPLOYED = "not_deployed"


def _blockers(
    fleet: Fleet, model_id: str, site_id: str, active: tuple[Directive, ...], present: bool
) -> list[Blocker]:
    """Why (model, site) does not count toward the jurisdiction's guarantee."""
    if present:
        return []
    model = fleet.models[model_id]
    site = fleet.sites[site_id]
    found: list[Blocker] = []
    if not export_allowed(fleet, model_id, site_id):
        found.append(
            Blocker(
                site_id,
                EXPORT,
                model.origin,
                f"{model_id} ({model.export_control}) originates in {model.origin}, whose "
                f"export rules do not allow it in {site.jurisdiction}",
            )
        )
    if not reachable(fleet, site_id):
        found.append(
            Blocker(
                site_id,
                RESIDENCY,
                site.jurisdiction,
                f"no jurisdiction lists {site.jurisdiction} in residency.process_in, so no "
                "one may be served there",
            )
        )
    for d in withdrawals(fleet, model_id, site_id, active):
        found.append(
            Blocker(site_id, WITHDRAWN, d.id, f"withdrawn by directive {d.id} ({d.jurisdiction})")
        )
    if not found:
        found.append(Blocker(site_id, NOT_DEPLOYED, "", "desired but not deployed yet (run apply)"))
    return found


def shortfalls(
    fleet: Fleet,
    at: datetime,
    present: Iterable[tuple[str, str]],
    jurisdictions: Iterable[str] | None = None,
) -> tuple[Shortfall, ...]:
    """Every (jurisdiction, model) with fewer than ``min_sites_per_model`` deployments among
    ``present`` (model, site) pairs, with what stands in the way at each missing site.

    ``present`` is the desired pairs for a plan (what the sites will hold after it) or the
    observed healthy deployments for ``status``. ``jurisdictions`` restricts the report.
    """
    pairs = frozenset(present)
    active = in_force(fleet, at)
    wanted = None if jurisdictions is None else frozenset(jurisdictions)
    out: list[Shortfall] = []
    for j in sorted(fleet.jurisdictions.values(), key=lambda j: j.id):
        if wanted is not None and j.id not in wanted:
            continue
        need = j.min_sites_per_model
        for m in sorted(j.models):
            if m not in fleet.models:
                continue
            count = sum(1 for s in j.sites if (m, s) in pairs)
            if count >= need:
                continue
            blockers: list[Blocker] = []
            for s in j.sites:
                blockers.extend(_blockers(fleet, m, s, active, (m, s) in pairs))
            if len(j.sites) < need:
                blockers.append(
                    Blocker(
                        "",
                        TOO_FEW_SITES,
                        j.id,
                        f"{j.id} declares {len(j.sites)} site(s), fewer than {need}",
                    )
                )
            out.append(Shortfall(j.id, m, count, need, tuple(blockers)))
    return tuple(out)


def placeable_models(fleet: Fleet, site_id: str) -> tuple[str, ...]:
    """The models configuration places at a site whatever the directives say (R1, R2 and
    reachability): the most it will ever be asked to hold."""
    owner = fleet.owner_of(site_id)
    if not reachable(fleet, site_id):
        return ()
    return tuple(
        sorted(m for m in owner.models if m in fleet.models and export_allowed(fleet, m, site_id))
    )


def capacity_problems(
    fleet: Fleet, files: Mapping[str, bytes] | None = None, label: str = ""
) -> tuple[Problem, ...]:
    """A site whose configuration places more models than its ``capacity``: a fleet error.

    ``files`` (the fleet's exact bytes) lets the problem name the line of ``capacity``.
    """
    out: list[Problem] = []
    for j in sorted(fleet.jurisdictions.values(), key=lambda j: j.id):
        for index, site_id in enumerate(j.sites):
            site = fleet.sites[site_id]
            if site.capacity is None:
                continue
            placed = placeable_models(fleet, site_id)
            if len(placed) <= site.capacity:
                continue
            path = f"sites[{index}].capacity"
            shown = f"{label}/{j.source}" if label else j.source
            line: int | None = None
            raw = (files or {}).get(j.source)
            if raw is not None:
                doc, _ = parse_yaml(shown, raw)
                if doc is not None:
                    line = doc.line_of(path)
            out.append(
                Problem(
                    shown,
                    line,
                    path,
                    f"site {site_id} would hold {len(placed)} model deployments "
                    f"({', '.join(placed)}), more than its capacity {site.capacity}; raise the "
                    f"capacity to at least {len(placed)} or list fewer models in {j.id}",
                )
            )
    return tuple(out)
