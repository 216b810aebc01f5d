"""A small, valid, signed fleet written as files, for tests that need real fleet files.

``FleetFactory`` writes the default texts below (or your replacements) into a directory and
signs every directive with its issuer's key, so a test states only what it changes:

    root = signed_fleet_factory({"eu.yaml": text.replace("DE", "XX")})
    root = signed_fleet_factory(mutate={"us.yaml": [("process_in: [US]", "process_in: [ZZ]")]})

The keys are generated once per process; private keys only ever live in memory and tmp_path.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path

from orchestrator.fleet.signing import generate_key, sign_file_bytes, write_signature

AUTHORITIES = ("us-gov", "us-court", "eu-gov", "notary")  # notary: a tenant attestor

US_YAML = """\
jurisdiction: US
name: United States
countries: [US]
authorities:
  - id: us-gov
    public_key: "{us-gov}"
  - id: us-court
    public_key: "{us-court}"
directive_threshold: 1
residency:
  process_in: [US]
export:
  restricted: [EU]
models: [m-us, m-open]
sites:
  - id: us-1
    provider: local
    region: local-us
    country: US
    operator: op-us
failover: [us-1]
"""

EU_YAML = """\
jurisdiction: EU
name: European Union
countries: [DE, FR]
authorities:
  - id: eu-gov
    public_key: "{eu-gov}"
residency:
  process_in: [EU]
models: [m-us, m-open]
sites:
  - id: eu-1
    provider: local
    region: local-eu
    country: DE
    operator: op-eu
  - id: eu-2
    provider: aws
    region: eu-central-1
    country: DE
    operator: op-eu
    governed_by: [US]
failover: [eu-1, eu-2]
guarantees:
  min_sites_per_model: 1
"""

MODELS_YAML = """\
models:
  - id: m-us
    origin: US
    export_control: restricted
    artifact: s3://bucket/m-us/
  - id: m-open
    origin: US
    artifact: s3://bucket/m-open/
"""

FLEET_YAML = """\
unlisted_countries: deny
"""

DIRECTIVE_YAML = """\
id: us-d1
jurisdiction: US
issuer: us-gov
reference: "test directive"
action: suspend
models: [m-us]
audience:
  nationality_not_in: [US]
effective: 2026-01-01T00:00:00Z
expires: null
supersedes: null
"""

DIRECTIVE_FILE = "directives/us-d1.yaml"

FLEET_WITH_ATTESTOR_YAML = """\
unlisted_countries: deny
attestors:
  - id: notary
    public_key: "{notary}"
"""


def tenant_yaml(
    tenant: str = "acme",
    residency: str = "DE",
    nationalities: tuple[str, ...] = ("DE",),
    expires: str = "2099-01-01T00:00:00Z",
    attested_by: str = "notary",
) -> str:
    """A tenant attestation (docs/identity.md); sign it with ``sign(path, "notary")``."""
    return (
        f"id: {tenant}\n"
        f"attested_by: {attested_by}\n"
        f'reference: "KYC file {tenant}"\n'
        "principal:\n"
        f"  residency: {residency}\n"
        f"  nationalities: [{', '.join(nationalities)}]\n"
        "  groups: []\n"
        f"expires: {expires}\n"
    )


@cache
def keys() -> dict[str, tuple[bytes, str]]:
    """authority id -> (private PEM, public base64), the same for the whole test run."""
    return {a: generate_key() for a in AUTHORITIES}


def default_files() -> dict[str, str]:
    """The valid small fleet, public keys filled in."""
    texts = {
        "us.yaml": US_YAML,
        "eu.yaml": EU_YAML,
        "models.yaml": MODELS_YAML,
        "fleet.yaml": FLEET_WITH_ATTESTOR_YAML,
        DIRECTIVE_FILE: DIRECTIVE_YAML,
    }
    out = {}
    for rel, template in texts.items():
        text = template
        for authority, (_, public) in keys().items():
            text = text.replace("{" + authority + "}", public)
        out[rel] = text
    return out


def sign(path: Path, authority: str) -> None:
    """Sign ``path`` as ``authority`` with the test key (appends/replaces its .sig line)."""
    pem, _ = keys()[authority]
    write_signature(path, authority, sign_file_bytes(pem, path.read_bytes()))


def issuer_of(text: str) -> str | None:
    found = re.search(r"^issuer:\s*([^\s#]+)", text, re.MULTILINE)
    return found.group(1) if found else None


class FleetFactory:
    """Writes small signed fleets under ``base`` (one new directory per call)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.count = 0

    def __call__(
        self,
        files: Mapping[str, str | bytes | None] | None = None,
        *,
        mutate: Mapping[str, Iterable[tuple[str, str]]] | None = None,
        sign_directives: bool = True,
        name: str | None = None,
    ) -> Path:
        """Write a fleet and return its directory (named ``name`` or ``fleetN``).

        ``files`` replaces (or with None removes) whole files; ``mutate`` applies
        (old, new) text replacements, each of which must match. Directives whose .sig is not
        given in ``files`` are signed by their issuer after all changes.
        """
        self.count += 1
        root = self.base / (name or f"fleet{self.count}")
        contents: dict[str, str | bytes | None] = dict(default_files())
        contents.update(files or {})
        for rel, edits in (mutate or {}).items():
            text = contents[rel]
            assert isinstance(text, str), rel
            for old, new in edits:
                assert old in text, f"{old!r} not in {rel}"
                text = text.replace(old, new, 1)
            contents[rel] = text
        root.mkdir(parents=True)
        (root / "directives").mkdir()
        for rel, content in contents.items():
            if content is None:
                continue
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8")
        if sign_directives:
            for rel, content in contents.items():
                if rel.startswith("tenants/") and rel.endswith(".yaml"):
                    if content is not None and f"{rel}.sig" not in contents:
                        sign(root / rel, "notary")
                    continue
                if not rel.startswith("directives/") or not rel.endswith(".yaml"):
                    continue
                if content is None or f"{rel}.sig" in contents:
                    continue
                issuer = issuer_of(
                    content if isinstance(content, str) else content.decode("utf-8", "replace")
                )
                if issuer in keys():
                    sign(root / rel, issuer)
        return root
