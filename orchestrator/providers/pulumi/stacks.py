"""The Pulumi engine's own rules, as pure functions (no ``pulumi`` import, no I/O).

- **Stacks**: one per jurisdiction, named by its id (``stack_name``), so an update for one
  jurisdiction can never touch another's resources.
- **Names**: the program names a deployment's serving resource and an artifact placement by
  their Sovereign address (``deployment.<site>.<model>``, ``artifact.<site>.<model>``), their
  helpers ``<address>/<part>`` and site-wide resources ``<site>/<part>``
  (``infra/components/jurisdiction.py``). ``parse_name`` reads that back from a URN.
- **Observation**: a preview of the stack (with refresh) says, per resource, whether it is
  ``same``, to ``create``, ``update``/``replace`` or ``delete``. ``observed_from_steps`` turns
  that into what the site holds in Sovereign's terms, so the planner's own diff (and its causes,
  interlocks and audit) makes the plan's changes from a preview exactly as from a built-in
  provider's observation.
- **Targets**: one plan change is carried out by an ``up`` targeted at its resources
  (``targets_for``), so the reconciler's phases, its check of the law at the point of action
  and its per-change audit hold for the Pulumi engine too.
- **Which stacks an update touches**: ``stacks_to_update``: those with a change at their sites.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from orchestrator.errors import UsageError
from orchestrator.fleet.model import ProviderName
from orchestrator.providers.base import Resource, ResourceKind, spec_of

ENGINES = ("builtin", "pulumi")
# the kinds of site the program declares
ENGINE_SITE_PROVIDERS = frozenset({ProviderName.AWS, ProviderName.GCP})
_STACK = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
_KINDS = {ResourceKind.DEPLOYMENT.value, ResourceKind.ARTIFACT.value}

# Pulumi step ops (``pulumi.automation.OpType`` values) -> what they say about the resource.
_ABSENT = frozenset({"create"})
_DIFFERS = frozenset(
    {"update", "replace", "create-replacement", "delete-replaced", "import", "import-replacement"}
)
_PRESENT = frozenset({"same", "read", "refresh", "discard"})
_GONE = frozenset({"delete"})


def check_engine(name: str | None) -> str:
    """The engine name, or ``UsageError`` listing the valid ones (None is ``builtin``)."""
    engine = name or "builtin"
    if engine not in ENGINES:
        raise UsageError(
            f"--engine {engine!r} is not an engine",
            hint=f"valid engines: {', '.join(ENGINES)} (builtin: each site's own provider)",
        )
    return engine


def engine_handles(site_provider: str) -> bool:
    """Whether ``--engine pulumi`` carries out the changes of a site of this provider (local
    sites are directories on the orchestrator host: they stay with the local provider)."""
    return site_provider in ENGINE_SITE_PROVIDERS


def stack_name(jurisdiction: str) -> str:
    """The stack of a jurisdiction: its id (valid as a Pulumi stack name by the fleet's own
    id rules; anything else is refused rather than mangled into a collision)."""
    if not _STACK.match(jurisdiction):
        raise UsageError(
            f"jurisdiction {jurisdiction!r} cannot name a Pulumi stack",
            hint="stack names take letters, digits, '_', '.' and '-'",
        )
    return jurisdiction


class Name(NamedTuple):
    """What a logical name in the program stands for."""

    site: str
    address: str | None  # the Sovereign address, None for site-wide resources
    anchor: bool  # the resource named by the address itself (not one of its helpers)


def urn_name(urn: str) -> str:
    """The logical name at the end of a URN (``urn:pulumi:STACK::PROJECT::TYPE::NAME``)."""
    return urn.rsplit("::", 1)[-1]


def parse_name(name: str) -> Name | None:
    """Read a logical name of the program; None for the stack's and sites' components."""
    head, slash, _ = name.partition("/")
    parts = head.split(".", 2)
    if len(parts) == 3 and parts[0] in _KINDS and parts[1] and parts[2]:
        return Name(parts[1], head, anchor=not slash)
    if slash and "." not in head and head:
        return Name(head, None, anchor=False)
    return None


Spec = tuple[tuple[str, str], ...]


class PreviewStep(NamedTuple):
    """One step of a preview, as the engine events report it."""

    op: str  # a pulumi OpType value: same, create, update, replace, delete, ...
    urn: str
    diffs: tuple[str, ...] = ()  # the properties that differ, for update/replace
    # what the stack's state holds for the resource (its last applied inputs), as Sovereign
    # spec values: see ``spec_of_inputs``; () when unknown or for a resource that holds none
    held: Spec = ()


ARTIFACT_TYPE = "pulumi-python:dynamic:Resource"
ENDPOINT_CONFIG_TYPE = "aws:sagemaker/endpointConfiguration:EndpointConfiguration"


def spec_of_inputs(resource_type: str, inputs: Mapping[str, Any] | None) -> Spec:
    """The part of a Sovereign spec a resource's inputs carry: an artifact placement its
    ``source``, a SageMaker endpoint configuration the deployment's instance type and count.
    Resources that carry none (and unknown inputs) give ``()``."""
    if not inputs:
        return ()
    if resource_type == ARTIFACT_TYPE and inputs.get("source") is not None:
        return spec_of(source=str(inputs["source"]))
    if resource_type == ENDPOINT_CONFIG_TYPE:
        variants = inputs.get("productionVariants") or []
        if variants and isinstance(variants[0], Mapping):
            v = variants[0]
            return spec_of(
                instance_type=v.get("instanceType"), instance_count=v.get("initialInstanceCount")
            )
    return ()


def address_status(ops: Iterable[str]) -> str:
    """One address's status from the ops of its resources: ``absent`` (all to be created),
    ``gone`` (all to be deleted), ``same`` (nothing to do) or ``differs``."""
    seen = set(ops)
    if not seen or seen <= _ABSENT:
        return "absent"
    if seen <= _GONE:
        return "gone"
    if seen <= _PRESENT:
        return "same"
    return "differs"


def _difference(step: PreviewStep) -> set[str]:
    part = urn_name(step.urn).partition("/")[2] or "resource"
    if step.diffs:
        return {f"{part}.{d}" for d in step.diffs}
    return {f"{part} {step.op}"}


def observed_from_steps(
    steps: Iterable[PreviewStep], desired: Iterable[Resource], site_id: str
) -> frozenset[Resource]:
    """What ``site_id`` holds, read from a preview of its stack run with the desired state.

    A desired resource whose resources are all ``same`` is held as desired; one whose resources
    are all to be created is missing; one with any other step differs (held with the spec
    ``pulumi: <what differs>``, so the plan shows an update); an address the program no longer
    declares but the stack still holds is held (the plan shows its deletion).
    """
    ops: dict[str, list[str]] = {}
    differences: dict[str, set[str]] = {}
    last: dict[str, dict[str, str]] = {}
    for step in steps:
        name = parse_name(urn_name(step.urn))
        if name is None or name.site != site_id or name.address is None:
            continue
        ops.setdefault(name.address, []).append(step.op)
        last.setdefault(name.address, {}).update(step.held)
        if step.op not in _PRESENT:
            differences.setdefault(name.address, set()).update(_difference(step))
    wanted = {r.address: r for r in desired if r.target == site_id}
    held: set[Resource] = set()
    for address, resource in wanted.items():
        status = address_status(ops.get(address, ()))
        if status == "same":
            held.add(resource)
        elif status != "absent":
            # What the stack last applied, when its inputs tell and it is not what is wanted
            # now (a config change: the plan shows old -> new); otherwise Pulumi sees a
            # difference Sovereign's spec does not hold (tags, a hand-made change): the plan
            # shows what differs, and its cause follows from what Sovereign recorded.
            spec = tuple(sorted(last.get(address, {}).items()))
            if not spec or spec == resource.spec:
                what = ", ".join(sorted(differences.get(address, {"changes"})))
                spec = (("pulumi", what),)
            held.add(Resource(resource.kind, site_id, resource.model, resource.key, spec))
    for address, address_ops in ops.items():
        if address not in wanted and address_status(address_ops) != "absent":
            kind, _, model = address.split(".", 2)
            spec = tuple(sorted(last.get(address, {}).items()))
            held.add(Resource(ResourceKind(kind), site_id, model, "", spec))
    return frozenset(held)


def targets_for(
    address: str, deleting: bool, steps: Iterable[PreviewStep], site_id: str
) -> tuple[str, ...]:
    """The URNs an ``up`` targets to carry out one change: the address's resources, and, for a
    placement, the site-wide resources and components it needs (bucket, parents)."""
    urns: list[str] = []
    for step in steps:
        name = parse_name(urn_name(step.urn))
        if name is not None and name.address == address:
            urns.append(step.urn)
        elif not deleting and (
            (name is not None and name.address is None and name.site == site_id)
            or (name is None and urn_name(step.urn) in (site_id,) + _stack_names(step.urn))
        ):
            urns.append(step.urn)
    return tuple(sorted(set(urns)))


def _stack_names(urn: str) -> tuple[str, ...]:
    # The jurisdiction component is named after the stack: urn:pulumi:STACK::...::STACK.
    parts = urn.split(":", 3)
    stack = parts[2] if len(parts) > 2 else ""
    return (stack,) if stack else ()


def stacks_to_update(
    targets: Iterable[str], site_owner: Mapping[str, str], site_provider: Mapping[str, str]
) -> tuple[str, ...]:
    """The stacks an apply touches: those of the jurisdictions owning a changed site that the
    engine handles. A jurisdiction whose desired state did not change is never updated."""
    return tuple(
        sorted(
            {
                stack_name(site_owner[t])
                for t in targets
                if t in site_owner and engine_handles(site_provider.get(t, ""))
            }
        )
    )
