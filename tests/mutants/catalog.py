"""The mutants of ``make mutants``: small, deliberate breaks of the fail-closed functions.

Each mutant is one exact snippet of the source and what replaces it, and the tests that must
fail once it is applied: ``suite`` (the regression tests of that control) and ``campaign`` (the
fuzz or crash campaign aimed at it, run with a seeded, larger budget). A mutant that survives
either is a campaign (or a test) that cannot fail where it claims to look; ``make mutants``
fails on it. ``tests/mutants/test_catalog.py`` (in ``make test``) checks that every snippet
still occurs exactly once, so the catalog cannot silently drift from the code.

``campaign`` is empty only where no campaign is aimed at the control (the reason is given);
docs/security.md lists the score.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MUTANTS", "PENDING", "Mutant"]

CLI_FUZZ = "tests/fuzz/test_cli_inputs.py"
GW_FUZZ = "tests/fuzz/test_gateway_inputs.py"


@dataclass(frozen=True)
class Mutant:
    id: str
    file: str
    original: str
    replacement: str
    suite: tuple[str, ...]
    campaign: tuple[str, ...] = ()
    no_campaign: str = ""  # why no campaign is aimed at it (only when ``campaign`` is empty)


MUTANTS: tuple[Mutant, ...] = (
    Mutant(
        "saved-plan-verification",
        "orchestrator/reconcile/verify.py",
        "    differences = _differences(keep(saved), keep(fresh))\n",
        "    differences: list[str] = []\n",
        suite=("tests/reconcile/test_failclosed.py",),
        campaign=(f"{CLI_FUZZ}::test_saved_plan_files",),
    ),
    Mutant(
        "saved-plan-sha256",
        "orchestrator/planning/plan.py",
        "        if recorded != plan.sha256():\n",
        "        if False:\n",
        suite=("tests/cli/test_edges.py::test_an_edited_sha256_in_a_saved_plan_is_refused",),
        campaign=(f"{CLI_FUZZ}::test_saved_plan_files",),
    ),
    Mutant(
        "rollback-protection",
        "orchestrator/reconcile/rollback.py",
        "        if rec.action == Action.ROTATE.value or rec.id not in protected:\n",
        "        if True:\n",
        suite=("tests/reconcile/test_rollback.py::test_an_edited_directive_in_force_is_refused",),
        no_campaign="no campaign deletes applied directives; the regression tests do",
    ),
    Mutant(
        "point-of-action-R1",
        "orchestrator/reconcile/law.py",
        "    if not offered(fleet, model.id, site.id):\n",
        "    if False:\n",
        suite=("tests/reconcile/test_failclosed.py",),
        no_campaign="the planner never asks for a forbidden placement; only forged plans reach "
        "this check, and the saved-plan campaign is stopped earlier by verification",
    ),
    Mutant(
        "point-of-action-R2",
        "orchestrator/reconcile/law.py",
        "    if not export_allowed(fleet, model.id, site.id):\n",
        "    if False:\n",
        suite=("tests/reconcile/test_failclosed.py",),
        no_campaign="as point-of-action-R1",
    ),
    Mutant(
        "signature-threshold",
        "orchestrator/fleet/checks.py",
        "    if len(signers) < threshold:\n",
        "    if len(signers) < 1:\n",
        suite=("tests/fleet/test_signatures.py",),
        no_campaign="the directive campaigns use the example fleet, whose thresholds are 1",
    ),
    Mutant(
        "pinned-authorities",
        "orchestrator/planning/trust.py",
        "        if pin.same_set(keys, threshold):\n",
        "        if True:\n",
        suite=(
            "tests/reconcile/test_trust_roots.py::test_a_key_of_your_own_lifts_nothing",
            "tests/gateway/test_applied.py::"
            "test_a_recorded_fleet_with_an_unpinned_authority_set_keeps_the_last_table",
        ),
        no_campaign="no campaign edits a profile's authorities after an apply; the regression "
        "tests do, on SQLite and S3, through apply, a saved plan and the controller",
    ),
    Mutant(
        "rotation-signed-by-pinned-keys",
        "orchestrator/planning/trust.py",
        "        if signed >= pin.threshold:\n",
        "        if True:\n",
        suite=(
            "tests/reconcile/test_trust_roots.py::"
            "test_a_rotation_not_signed_by_a_pinned_key_is_refused",
        ),
        no_campaign="as pinned-authorities",
    ),
    Mutant(
        "token-country-ascii",
        "orchestrator/fleet/countries.py",
        "    if len(value) != 2 or not all(ch in _ASCII_LETTERS for ch in value):\n"
        "        return None\n"
        "    return value.upper()\n",
        "    if len(value.upper()) != 2 or not value.upper().isalpha():\n"
        "        return None\n"
        "    return value.upper() if value.upper().isascii() else None\n",
        suite=(
            "tests/gateway/test_body.py::test_a_unicode_nationality_that_upper_cases_to_us_is_refused",
        ),
        campaign=(f"{GW_FUZZ}::test_jwt_claims",),
    ),
    Mutant(
        "token-groups",
        "orchestrator/gateway/tokens.py",
        "    return isinstance(value, str) and _GROUP_RE.match(value) is not None\n",
        "    return isinstance(value, str)\n",
        suite=(
            "tests/gateway/test_tokens.py",
            "tests/cli/test_edges.py::test_token_mint_refuses_a_group_the_gateway_would_refuse",
        ),
        campaign=(f"{GW_FUZZ}::test_jwt_claims",),
    ),
    Mutant(
        "gateway-route",
        "orchestrator/gateway/proxy.py",
        "        for site in health.order(route):\n",
        "        for site in health.order(tuple(serving.upstreams)):\n",
        suite=("tests/gateway/test_routing.py",),
        campaign=(f"{GW_FUZZ}::test_gateway_bodies_and_headers",),
    ),
    Mutant(
        "gateway-duplicate-keys",
        "orchestrator/gateway/body.py",
        "    if len(obj) != len(pairs):\n",
        "    if False:\n",
        suite=("tests/gateway/test_body.py",),
        campaign=(f"{GW_FUZZ}::test_gateway_bodies_and_headers",),
    ),
)

# Fail-closed functions that have no mutant yet, and why (docs/security.md says so too).
PENDING: dict[str, str] = {}
