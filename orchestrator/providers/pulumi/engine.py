"""``--engine pulumi``: the aws and gcp sites of each jurisdiction carried out by its stack.

To the reconciler this is one more provider (``Provider``: observe a site, apply one change),
so plans, causes, interlocks, saved-plan verification, the law at the point of action and the
audit are exactly those of the built-in providers; only how a site is observed and changed
differs:

- ``observe(site)``: a refreshing ``preview`` of the site's jurisdiction's stack, run with the
  jurisdiction's export as its config, read back as what the site holds
  (``stacks.observed_from_steps``). Each stack is previewed once per run, sites of different
  jurisdictions concurrently.
- ``apply(site, change)``: an ``up`` of that stack targeted at the change's resources
  (``stacks.targets_for``). Updates of one stack run one at a time (a stack takes one update
  at a time); different jurisdictions' stacks run in parallel, and one stack failing fails only
  its own sites' changes (the others stay applied: exit 3). Stacks without changes are never
  updated.

The run's options (``ProviderContext.options``) carry the backend (``pulumi_backend``), the
program and work directories and each stack's input (``pulumi_input.<J>``), set by
``reconcile.observe.Providers.for_fleet``.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

from orchestrator.errors import PermanentProviderError
from orchestrator.fleet.model import Site
from orchestrator.providers.base import (
    Op,
    ProviderContext,
    Resource,
    ResourceChange,
    ResourceKind,
)
from orchestrator.providers.pulumi.automation import Stacks, default_program_dir, require_cli
from orchestrator.providers.pulumi.stacks import (
    PreviewStep,
    engine_handles,
    observed_from_steps,
    parse_name,
    targets_for,
    urn_name,
)

BACKEND_OPTION = "pulumi_backend"
WORK_DIR_OPTION = "pulumi_work_dir"
PROGRAM_OPTION = "pulumi_program"
INPUT_OPTION = "pulumi_input."  # + jurisdiction id: that stack's export, as JSON text


def desired_of_input(stack_input: str, site_id: str) -> frozenset[Resource]:
    """The resources an export asks of one site, with the specs ``sovereign plan`` compares."""
    document = json.loads(stack_input)
    out: set[Resource] = set()
    for key, kind in (
        ("deployments", ResourceKind.DEPLOYMENT),
        ("artifacts", ResourceKind.ARTIFACT),
    ):
        for entry in document[key]:
            if entry["site"] == site_id:
                spec = tuple(sorted((str(k), str(v)) for k, v in entry["spec"].items()))
                out.add(Resource(kind, site_id, str(entry["model"]), "", spec))
    return frozenset(out)


class PulumiEngine:
    """``Provider`` for the aws and gcp sites of a run with ``--engine pulumi``."""

    name = "pulumi"

    def __init__(self, context: ProviderContext) -> None:
        options = context.options
        fleet_dir = Path(options.get("fleet_dir", "."))
        self._stacks = Stacks(
            cli=require_cli(),
            backend_url=options[BACKEND_OPTION],
            work_dir=Path(options.get(WORK_DIR_OPTION, str(context.state_dir / "pulumi"))),
            program_dir=Path(options.get(PROGRAM_OPTION) or default_program_dir()),
            fleet_dir=fleet_dir,
        )
        self._inputs = {
            k.removeprefix(INPUT_OPTION): v
            for k, v in options.items()
            if k.startswith(INPUT_OPTION)
        }
        self._steps: dict[str, tuple[PreviewStep, ...]] = {}
        self._guard = threading.Lock()
        self._stack_locks: dict[str, threading.Lock] = {}

    def _lock(self, jurisdiction: str) -> threading.Lock:
        with self._guard:
            return self._stack_locks.setdefault(jurisdiction, threading.Lock())

    def _input(self, site: Site) -> str:
        if not engine_handles(site.provider):
            raise PermanentProviderError(
                f"site {site.id} ({site.provider}) is not declared by the Pulumi program",
                hint="--engine pulumi carries out aws and gcp sites; local sites keep the local "
                "provider",
            )
        try:
            return self._inputs[site.jurisdiction]
        except KeyError:
            raise PermanentProviderError(
                f"no stack input for jurisdiction {site.jurisdiction} (site {site.id})"
            ) from None

    def _preview(self, site: Site) -> tuple[PreviewStep, ...]:
        j = site.jurisdiction
        with self._lock(j):
            if j not in self._steps:
                self._steps[j] = self._stacks.preview(j, self._input(site))
            return self._steps[j]

    def observe(self, site: Site) -> frozenset[Resource]:
        desired = desired_of_input(self._input(site), site.id)
        return observed_from_steps(self._preview(site), desired, site.id)

    def apply(self, site: Site, change: ResourceChange) -> None:
        resource = change.resource
        if resource.target != site.id:
            raise PermanentProviderError(
                f"change {resource.address} targets {resource.target}, not site {site.id}"
            )
        targets = targets_for(
            resource.address, change.op is Op.DELETE, self._preview(site), site.id
        )
        named = (parse_name(urn_name(urn)) for urn in targets)
        if not any(n is not None and n.address == resource.address for n in named):
            raise PermanentProviderError(
                f"the preview of stack {site.jurisdiction} has no resource for {resource.address}",
                hint="run `sovereign plan --engine pulumi` again: the stack changed since",
            )
        with self._lock(site.jurisdiction):
            self._stacks.up(site.jurisdiction, self._input(site), targets)
