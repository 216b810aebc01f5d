"""One run against a fleet and its state: load, observe, plan, audit.

``plan``, ``apply``, ``status`` and the demo all start the same way: read the fleet files once
(so the plan, its digest and the fleet recorded as applied are the very same bytes), open the
state store, build the providers, observe, diff. Keeping that in one place means the CLI is
only presentation and the demo drives exactly what a user runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from orchestrator.errors import FleetError, ProviderError, UsageError
from orchestrator.fleet.loader import load_fleet_files, read_fleet_files
from orchestrator.fleet.model import Fleet, Site
from orchestrator.planning.causes import cause_context, directive_events
from orchestrator.planning.decommission import leaving_jurisdictions
from orchestrator.planning.deferral import Health, Pair, defer, observed_health
from orchestrator.planning.departed import Departed, departed_sites, name_departures
from orchestrator.planning.desired import desired_pairs, desired_state
from orchestrator.planning.diff import diff
from orchestrator.planning.engine import check_engine, engine_options
from orchestrator.planning.guarantees import capacity_problems
from orchestrator.planning.plan import TABLE_TARGET, Plan, Unobservable
from orchestrator.planning.scope import Scope, parse_scope, resource_in_scope, sites_in_scope
from orchestrator.planning.trust import TrustChange, refuse_unpinned
from orchestrator.providers.base import Resource, ResourceKind
from orchestrator.providers.pulumi.automation import require_cli
from orchestrator.reconcile.interlock import check_interlocks, plan_warnings
from orchestrator.reconcile.observe import Providers, applied_table
from orchestrator.reconcile.rollback import ledger_of, refuse_rollback
from orchestrator.reconcile.rollout import healthy_since, uses_waves
from orchestrator.state import open_store
from orchestrator.state.base import StateStore
from orchestrator.state.lease import DEFAULT_LEASE_SECONDS


@dataclass
class Session:
    fleet_dir: Path
    files: dict[str, bytes]
    fleet: Fleet
    digest: str
    store: StateStore
    providers: Providers
    at: datetime
    sites_local: bool
    scope: Scope = None  # --jurisdiction: only these jurisdictions' sites (None: all)
    engine: str = "builtin"  # --engine: who carries out aws and gcp sites (planning.engine)
    # sites the state still records resources at but the fleet no longer declares
    departed: dict[str, Departed] = field(default_factory=dict)
    # --sites was not given and ``sites_local`` is what the state's last apply recorded
    sites_recorded: bool = False

    def site(self, site_id: str) -> Site:
        """A site of the fleet, or one that left it and is being torn down."""
        found = self.fleet.sites.get(site_id)
        return found if found is not None else self.departed[site_id].site

    def departed_in_scope(self) -> tuple[Departed, ...]:
        return tuple(
            d
            for _, d in sorted(self.departed.items())
            if self.scope is None or d.site.jurisdiction in self.scope
        )

    def close(self) -> None:
        self.store.close()

    @property
    def include_dns(self) -> bool:
        # Offline runs never touch a cloud DNS zone.
        return not self.sites_local


def open_session(
    fleet_dir: Path,
    state_url: str | None,
    *,
    at: datetime | None = None,
    sites_local: bool | None = False,
    jurisdictions: Iterable[str] | None = None,
    engine: str | None = None,
    create: bool = True,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
) -> Session:
    """Read the fleet and open its state; ``create=False`` for readers (docs/cli.md: a reader
    never creates a state store, and one that does not exist is an error).

    ``sites_local=None`` (no ``--sites`` given) takes the override the state's last apply
    recorded (``recorded_sites``; docs/cli.md, "--sites"); the session says so in
    ``sites_recorded``."""
    engine = check_engine(engine)
    if sites_local is None and engine == "pulumi":
        sites_local = False  # --engine pulumi names who carries the cloud sites out
    if engine == "pulumi":
        if sites_local:
            raise UsageError(
                "--engine pulumi and --sites local exclude each other",
                hint="--sites local runs every site on the local provider; --engine pulumi "
                "carries out aws and gcp sites through their jurisdiction's Pulumi stack",
            )
        require_cli()  # before anything is read or opened: without the CLI nothing happens
    files = read_fleet_files(fleet_dir)
    fleet = load_fleet_files(files, label=str(fleet_dir))
    over_capacity = capacity_problems(fleet, files, label=str(fleet_dir))
    if over_capacity:
        raise FleetError(over_capacity)
    when = at if at is not None else datetime.now(UTC)
    options = engine_options(fleet, fleet_dir, when, state_url) if engine == "pulumi" else None
    store = open_store(state_url, fleet_dir, create=create, lease_seconds=lease_seconds)
    recorded = False
    try:
        if sites_local is None:
            sites_local = recorded = recorded_sites(store) == "local"
        departed = departed_sites(
            fleet, store.recorded_resources(), lambda: _applied_fleet(store, str(fleet_dir))
        )
        scope = parse_scope(
            fleet, jurisdictions, known={d.site.jurisdiction for d in departed.values()}
        )
    except BaseException:
        store.close()
        raise
    return Session(
        fleet_dir=fleet_dir,
        files=files,
        fleet=fleet,
        digest=fleet.digest,
        store=store,
        providers=Providers.for_fleet(
            fleet, fleet_dir, sites_local=sites_local, engine=engine, engine_options=options
        ),
        at=when,
        sites_local=sites_local,
        scope=scope,
        engine=engine,
        departed=departed,
        sites_recorded=recorded,
    )


def recorded_sites(store: StateStore) -> str | None:
    """The ``--sites`` override of the last apply on this state (``"local"``), or None: each
    apply records it in its ``apply.started`` audit entry."""
    for entry in reversed(store.audit.entries()):
        if entry.kind == "apply.started":
            sites = entry.payload.get("sites")
            return sites if isinstance(sites, str) else None
    return None


def _applied_fleet(store: StateStore, label: str) -> Fleet | None:
    """The last applied fleet (it describes sites recorded before records named their site);
    None when there is none or it no longer loads."""
    applied = store.applied_fleet()
    if applied is None:
        return None
    try:
        return load_fleet_files(applied.files, label=f"{label} (applied)")
    except FleetError:
        return None


def desired_of(session: Session) -> frozenset[Resource]:
    desired = desired_state(
        session.fleet, session.at, fleet_digest=session.digest, include_dns=session.include_dns
    )
    if session.scope is None:
        return desired
    return frozenset(r for r in desired if resource_in_scope(session.fleet, r, session.scope))


def observe_each(
    session: Session, desired: frozenset[Resource]
) -> tuple[frozenset[Resource], dict[str, str]]:
    """What every site and route target in scope holds, observed concurrently, and apart from
    it the targets whose provider failed (target -> why): one unreachable site is reported,
    never allowed to hold back the others (the planner and saved-plan verification both)."""
    fleet, providers = session.fleet, session.providers
    found: set[Resource] = set(applied_table(session.store))
    failed: dict[str, str] = {}

    def observe(site_id: str) -> frozenset[Resource] | str:
        try:
            return providers.for_site(fleet, site_id).observe(fleet.sites[site_id])
        except ProviderError as exc:
            return f"cannot be observed: {exc.message}"

    site_ids = sorted(sites_in_scope(fleet, session.scope))
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(site_ids)))) as pool:
        for site_id, seen in zip(site_ids, pool.map(observe, site_ids), strict=True):
            if isinstance(seen, str):
                failed[site_id] = seen
            else:
                found |= seen
    for departed in session.departed_in_scope():
        # Unreachable, it stands on the state's records: its teardown is planned and fails.
        found |= observe_departed(session, departed)
    routes = {
        r.target for r in desired if r.kind is ResourceKind.ROUTE and r.target != TABLE_TARGET
    }
    for target in sorted(routes):
        try:
            found |= providers.for_route(target).observe_routes(target)
        except ProviderError as exc:
            failed[target] = f"cannot be observed: {exc.message}"
    return frozenset(found), failed


def observe_departed(session: Session, departed: Departed) -> frozenset[Resource]:
    """What a site that left the fleet still holds: observed through its provider (managed
    tags), or, when the provider cannot be reached, what the state recorded there, so that the
    plan still asks for the teardown and the apply fails that site alone (exit 3)."""
    try:
        return session.providers.for_site_value(departed.site).observe(departed.site)
    except ProviderError:
        return departed.recorded


def make_plan(
    session: Session,
    *,
    audit: bool = True,
    observed: tuple[frozenset[Resource], dict[str, str]] | None = None,
    release: bool = False,
) -> Plan:
    """Desired vs actual now, with causes and interlocks; audited as ``plan.created``.

    Configuration changes that must wait for a change window or a rollout wave are listed
    apart as ``deferred`` (``planning.deferral``); ``release`` (``apply --override-window``)
    keeps them among the changes instead.

    The actual state is observed site by site (``observe_each``) unless ``observed`` gives it
    (``reconcile.verify`` observes first). A target that cannot be observed gets no change and
    is recorded on the plan as unobservable; it never counts as serving for the interlock."""
    # Directive rollback protection first, on the real clock: nothing is planned from a fleet
    # that lifts a directive without its jurisdiction's signed word.
    now = datetime.now(UTC)
    ledger = ledger_of(session.store)
    refuse_rollback(session.fleet, ledger, now, session.store.audit)
    # Nor from a fleet that changes who speaks for a jurisdiction without the pinned keys.
    pins = session.store.pinned_authorities()
    trust = refuse_unpinned(session.fleet, session.files, pins, ledger, now, session.store.audit)
    # Jurisdictions leaving the fleet: listed, and unpinned only by a decommission.
    leaving = tuple(
        j
        for j in leaving_jurisdictions(
            session.fleet, (d.site.jurisdiction for d in session.departed.values()), pins
        )
        if session.scope is None or j in session.scope
    )
    trust += tuple(
        TrustChange(j, "unpin", pins[j].authorities, pins[j].threshold, None, None, "decommission")
        for j in leaving
        if j in pins
    )
    desired = desired_of(session)
    actual, blind = observed if observed is not None else observe_each(session, desired)
    applied = session.store.applied_fleet()
    applied_files = dict(applied.files) if applied is not None else None
    ctx = cause_context(
        session.fleet, session.at, applied_files, session.store.recorded_resources()
    )
    if session.departed:
        owners = {t: d.site.jurisdiction for t, d in session.departed.items()}
        ctx = replace(ctx, jurisdiction_of={**ctx.jurisdiction_of, **owners})
    changes = tuple(
        c
        for c in name_departures(diff(desired, actual, ctx), session.fleet, session.departed)
        if c.target not in blind
    )
    unobservable = unobservable_of(session, blind)
    pairs = desired_pairs(session.fleet, session.at)
    changes, deferred = defer(
        session.fleet, session.at, changes, pairs, rollout_health(session, actual)
    )
    if release:
        changes, deferred = changes + tuple(d.change for d in deferred), ()
    plan = Plan(
        lineage=session.store.lineage(),
        serial=session.store.serial(),
        fleet_digest=session.digest,
        created_at=datetime.now(UTC),
        at=session.at,
        changes=changes,
        sites="local" if session.sites_local else None,
        engine=None if session.engine == "builtin" else session.engine,
        scope=session.scope,
        unobservable=unobservable,
        deferred=deferred,
        trust=trust,
        decommission=leaving,
    )
    violations = check_interlocks(session.fleet, session.at, pairs, plan.changes, blind)
    plan = replace(
        plan,
        interlocks=violations,
        warnings=plan_warnings(session.fleet, session.at, pairs, violations, session.scope),
    )
    if audit:
        audit_plan(session, plan, applied_files)
    return plan


def unobservable_of(session: Session, blind: dict[str, str]) -> tuple[Unobservable, ...]:
    """The targets ``observe_each`` could not observe, with their jurisdictions, sorted."""
    return tuple(
        Unobservable(t, _jurisdiction_of(session, t), why) for t, why in sorted(blind.items())
    )


def release_deferred(session: Session, plan: Plan) -> Plan:
    """``plan`` with its deferred changes among the changes (``apply --override-window``),
    the interlocks judged again on everything it now carries out."""
    changes = plan.changes + tuple(d.change for d in plan.deferred)
    blind = {u.target for u in plan.unobservable}
    pairs = desired_pairs(session.fleet, session.at)
    violations = check_interlocks(session.fleet, session.at, pairs, changes, blind)
    return replace(
        plan,
        changes=changes,
        deferred=(),
        interlocks=violations,
        warnings=plan_warnings(session.fleet, session.at, pairs, violations, session.scope),
    )


def rollout_health(session: Session, actual: Iterable[Resource]) -> dict[Pair, Health]:
    """What the rollout gate needs: each observed deployment's health and since when (none
    for a fleet without rollout waves)."""
    if not uses_waves(session.fleet):
        return {}
    actual = tuple(actual)
    return observed_health(actual, healthy_since(session.store, actual), session.at)


def _jurisdiction_of(session: Session, target: str) -> str:
    site = session.fleet.sites.get(target)
    if site is not None:
        return site.jurisdiction
    departed = session.departed.get(target)
    return departed.site.jurisdiction if departed is not None else ""


def audit_plan(session: Session, plan: Plan, applied_files: dict[str, bytes] | None) -> None:
    """Record the plan as ``plan.created`` (fail closed: an ``AuditError`` propagates). The
    directive differences it would carry out are listed in it as ``directives``: they are
    recorded as ``directive.*`` entries only once applied (``audit_directives``), so that a
    plan nobody applies (a rejected pull request) leaves nothing that reads as applied."""
    log = session.store.audit
    proposed = [
        {"kind": ev.kind, **ev.to_json()}
        for ev in directive_events(session.fleet, session.at, applied_files)
    ]
    log.append(
        "plan.created",
        {
            "lineage": plan.lineage,
            "serial": plan.serial,
            "scope": None if plan.scope is None else list(plan.scope),
            "fleet_digest": plan.fleet_digest,
            "at": plan.at.isoformat(),
            "summary": plan.summary().to_json(),
            "interlocks": [v.to_json() for v in plan.interlocks],
            "unobservable": [u.to_json() for u in plan.unobservable],
            "directives": proposed,
            "trust": [t.to_json() for t in plan.trust],
        },
    )


def audit_directives(session: Session, applied_files: dict[str, bytes] | None) -> None:
    """Once the working fleet is recorded as applied: every directive difference from the
    fleet applied before (``applied_files``) not already recorded, as ``directive.added``,
    ``.changed``, ``.removed`` or ``.expired`` (fail closed: an ``AuditError`` propagates)."""
    log = session.store.audit
    seen = {
        (e.kind, str(e.payload.get("id")), str(e.payload.get("sha256")))
        for e in log.entries()
        if e.kind.startswith("directive.")
    }
    for ev in directive_events(session.fleet, session.at, applied_files):
        if (ev.kind, ev.directive_id, ev.sha256) not in seen:
            log.append(ev.kind, ev.to_json())
