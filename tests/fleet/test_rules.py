"""One failing fixture per validation rule: start from the valid small fleet, change one thing,
and assert the exact problems (file, line, field and what the message says)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from orchestrator.errors import FleetError, Problem
from orchestrator.fleet.loader import load_fleet, load_fleet_files, read_fleet_files
from tests.fleet.builder import DIRECTIVE_FILE, DIRECTIVE_YAML, FleetFactory

D = DIRECTIVE_FILE
EU_DIRECTIVE = (
    DIRECTIVE_YAML.replace("id: us-d1", "id: eu-d1")
    .replace("jurisdiction: US", "jurisdiction: EU")
    .replace("issuer: us-gov", "issuer: eu-gov")
)


@dataclass(frozen=True)
class Case:
    name: str
    expect: list[tuple[str, int | None, str, str]]  # (file, line, field, message contains)
    mutate: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    files: dict[str, str | bytes | None] = field(default_factory=dict)
    sign: bool = True


CASES = [
    # ---- YAML itself
    Case("empty file", [("extra.yaml", None, "", "file is empty")], files={"extra.yaml": ""}),
    Case(
        "only comments",
        [("extra.yaml", None, "", "file is empty")],
        files={"extra.yaml": "# nothing\n"},
    ),
    Case("binary", [("extra.yaml", None, "", "binary file")], files={"extra.yaml": b"\x00\x01"}),
    Case(
        "not utf-8",
        [("extra.yaml", 2, "", "not valid UTF-8")],
        files={"extra.yaml": b"a: 1\nname: \xff\n"},
    ),
    Case(
        "malformed",
        [("extra.yaml", 2, "", "malformed YAML")],
        files={"extra.yaml": "a: [1, 2\nb: 3\n"},
    ),
    Case(
        "top level list",
        [("extra.yaml", 1, "", "the top level is a list")],
        files={"extra.yaml": "- a\n- b\n"},
    ),
    Case(
        "top level scalar",
        [("extra.yaml", 1, "", "the top level is a single value")],
        files={"extra.yaml": "hello\n"},
    ),
    Case(
        "two documents",
        [("extra.yaml", 2, "", "malformed YAML")],
        files={"extra.yaml": "a: 1\n---\nb: 2\n"},
    ),
    Case(
        "alias bomb",
        [("extra.yaml", None, "", "expands to more than 100000 values")],
        files={
            "extra.yaml": "a: &a [x, x, x, x, x, x, x, x, x]\n"
            + "".join(
                f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n"
                for p, c in zip("abcdefg", "bcdefgh", strict=True)
            )
        },
    ),
    Case(
        "nested too deeply",
        [("extra.yaml", 1, "", "malformed YAML")],
        files={"extra.yaml": "a: " + "[" * 5000 + "]" * 5000 + "\n"},
    ),
    Case(
        "duplicate key",
        [("eu.yaml", 3, "name", "duplicate key 'name' (first defined on line 2)")],
        mutate={"eu.yaml": [("name: European Union\n", "name: European Union\nname: Again\n")]},
    ),
    Case(
        "impossible date",
        [(D, None, "", "cannot read a value")],
        mutate={D: [("2026-01-01T00:00:00Z", "2026-02-30T00:00:00Z")]},
    ),
    # ---- profile schema
    Case(
        "unknown key",
        [
            ("eu.yaml", 16, "sites[1].region", "required field is missing"),
            (
                "eu.yaml",
                18,
                "sites[1].regoin",
                "unknown key 'regoin'; valid keys here: id, provider",
            ),
        ],
        mutate={"eu.yaml": [("    region: eu-central-1", "    regoin: eu-central-1")]},
    ),
    Case(
        "missing field",
        [("us.yaml", 1, "name", "required field is missing")],
        mutate={"us.yaml": [("name: United States\n", "")]},
    ),
    Case(
        "wrong type",
        [("us.yaml", 9, "directive_threshold", "valid integer (got a string)")],
        mutate={"us.yaml": [("directive_threshold: 1", 'directive_threshold: "1"')]},
    ),
    Case(
        "bool is not an int",
        [("us.yaml", 9, "directive_threshold", "valid integer")],
        mutate={"us.yaml": [("directive_threshold: 1", "directive_threshold: true")]},
    ),
    Case(
        "threshold above authorities",
        [
            (
                "us.yaml",
                9,
                "directive_threshold",
                "between 1 and the number of authorities (2), got 3",
            ),
            (D + ".sig", None, "", "1 valid signature(s) (verified: us-gov); US requires 2"),
        ],
        mutate={"us.yaml": [("directive_threshold: 1", "directive_threshold: 3")]},
    ),
    Case(
        "threshold zero",
        [("us.yaml", 9, "directive_threshold", "between 1 and")],
        mutate={"us.yaml": [("directive_threshold: 1", "directive_threshold: 0")]},
    ),
    Case(
        "jurisdiction id format",
        [
            ("extra.yaml", 1, "jurisdiction", "not a jurisdiction id: use A-Z, 0-9 and '-'"),
        ],
        files={
            "extra.yaml": "jurisdiction: gb\nname: x\ncountries: [GB]\n"
            "residency: {process_in: []}\n"
        },
    ),
    Case(
        "no authorities",
        [("extra.yaml", 1, "jurisdiction", "no authorities declared")],
        files={
            "extra.yaml": "jurisdiction: GB\nname: x\ncountries: [GB]\n"
            "residency: {process_in: [GB]}\n"
        },
    ),
    Case(
        "country code",
        [("eu.yaml", 3, "countries[1]", "'XX' is not an ISO 3166-1 alpha-2")],
        mutate={"eu.yaml": [("countries: [DE, FR]", "countries: [DE, XX]")]},
    ),
    Case(
        "lower-case country",
        [("eu.yaml", 3, "countries[0]", "'de' is not an ISO 3166-1")],
        mutate={"eu.yaml": [("countries: [DE, FR]", "countries: [de, FR]")]},
    ),
    Case(
        "country in two profiles",
        [
            ("us.yaml", 3, "countries[0]", "country US is already in jurisdiction EU"),
        ],
        mutate={"eu.yaml": [("countries: [DE, FR]", "countries: [DE, FR, US]")]},
    ),
    Case(
        "jurisdiction declared twice",
        [
            ("us.yaml", 1, "jurisdiction", "jurisdiction 'US' is already declared by"),
        ],
        files={
            "extra.yaml": "jurisdiction: US\nname: x\ncountries: [GB]\nauthorities:\n"
            "  - id: x\n    public_key: " + "A" * 43 + "=\n"
            "residency: {process_in: [US]}\n"
        },
    ),
    Case(
        "site id twice",
        [("us.yaml", 16, "sites[0].id", "site id 'eu-1' is already used in")],
        mutate={"us.yaml": [("id: us-1", "id: eu-1"), ("failover: [us-1]", "failover: [eu-1]")]},
    ),
    Case(
        "site id format",
        [
            ("us.yaml", 16, "sites[0].id", "'US_1' is not a site id"),
            ("us.yaml", 21, "failover[0]", "'US_1' is not a site id"),
        ],
        mutate={"us.yaml": [("id: us-1", "id: US_1"), ("failover: [us-1]", "failover: [US_1]")]},
    ),
    Case(
        "authority twice",
        [("us.yaml", 7, "authorities[1].id", "authority id 'us-gov' appears twice")],
        mutate={"us.yaml": [("id: us-court", "id: us-gov")]},
    ),
    Case(
        "public key length",
        [
            (
                "us.yaml",
                8,
                "authorities[1].public_key",
                "decodes to 16 bytes; an Ed25519 public key is exactly 32 bytes",
            ),
        ],
        mutate={
            "us.yaml": [
                (
                    '- id: us-court\n    public_key: "',
                    '- id: us-court\n    public_key: "AAAAAAAAAAAAAAAAAAAAAA==" #',
                )
            ]
        },
    ),
    Case(
        "public key base64",
        [("us.yaml", 8, "authorities[1].public_key", "not valid base64")],
        mutate={
            "us.yaml": [
                ('- id: us-court\n    public_key: "', '- id: us-court\n    public_key: "!!!" #')
            ]
        },
    ),
    Case(
        "process_in unknown",
        [
            (
                "us.yaml",
                11,
                "residency.process_in[0]",
                "'ZZ' is not a jurisdiction of the fleet (valid: EU, US)",
            ),
        ],
        mutate={"us.yaml": [("process_in: [US]", "process_in: [ZZ]")]},
    ),
    Case(
        "export target unknown",
        [("us.yaml", 13, "export.restricted[0]", "'JP' is not a jurisdiction")],
        mutate={"us.yaml": [("restricted: [EU]", "restricted: [JP]")]},
    ),
    Case(
        "profile model not in catalog",
        [
            (
                "us.yaml",
                14,
                "models[1]",
                "model 'm-nope' is not in the catalog (models.yaml; "
                "did you mean m-open? valid: m-open, m-us)",
            ),
        ],
        mutate={"us.yaml": [("models: [m-us, m-open]", "models: [m-us, m-nope]")]},
    ),
    Case(
        "failover unknown site",
        [
            (
                "eu.yaml",
                22,
                "failover[1]",
                "'eu-9' is not a site of the fleet (did you mean eu-2 or "
                "eu-1? valid: eu-1, eu-2, us-1)",
            ),
        ],
        mutate={"eu.yaml": [("failover: [eu-1, eu-2]", "failover: [eu-1, eu-9]")]},
    ),
    Case(
        "failover duplicate",
        [("eu.yaml", 22, "failover[1]", "listed twice")],
        mutate={"eu.yaml": [("failover: [eu-1, eu-2]", "failover: [eu-1, eu-1]")]},
    ),
    Case(
        "governed_by unknown",
        [("eu.yaml", 21, "sites[1].governed_by[0]", "'CN' is not a jurisdiction")],
        mutate={"eu.yaml": [("governed_by: [US]", "governed_by: [CN]")]},
    ),
    Case(
        "aws region unknown",
        [("eu.yaml", 18, "sites[1].region", "'eu-centrall-1' is not a region of aws")],
        mutate={"eu.yaml": [("region: eu-central-1", "region: eu-centrall-1")]},
    ),
    Case(
        "gcp region unknown",
        [("eu.yaml", 18, "sites[1].region", "not a region of gcp")],
        mutate={"eu.yaml": [("provider: aws", "provider: gcp")]},
    ),
    Case(
        "region in another country",
        [
            (
                "eu.yaml",
                19,
                "sites[1].country",
                "aws region eu-central-1 is in DE, but the site says FR",
            ),
        ],
        mutate={"eu.yaml": [("eu-central-1\n    country: DE", "eu-central-1\n    country: FR")]},
    ),
    Case(
        "provider unknown",
        [("us.yaml", 17, "sites[0].provider", "'aws', 'gcp' or 'local'")],
        mutate={"us.yaml": [("provider: local", "provider: azure")]},
    ),
    Case(
        "endpoint not http",
        [("us.yaml", 21, "sites[0].endpoint", "not an http(s) URL")],
        mutate={"us.yaml": [("operator: op-us\n", "operator: op-us\n    endpoint: ftp://x\n")]},
    ),
    Case(
        "capacity negative",
        [("us.yaml", 21, "sites[0].capacity", "greater than or equal to 0")],
        mutate={"us.yaml": [("operator: op-us\n", "operator: op-us\n    capacity: -1\n")]},
    ),
    Case(
        "instance_count zero",
        [("us.yaml", 21, "sites[0].instance_count", "greater than or equal to 1")],
        mutate={"us.yaml": [("operator: op-us\n", "operator: op-us\n    instance_count: 0\n")]},
    ),
    Case(
        "guarantees type",
        [("eu.yaml", 24, "guarantees.min_sites_per_model", "valid integer")],
        mutate={"eu.yaml": [("min_sites_per_model: 1", "min_sites_per_model: one")]},
    ),
    # ---- catalog
    Case(
        "model twice",
        [
            ("eu.yaml", 9, "models[1]", "model 'm-open' is not in the catalog"),
            ("models.yaml", 6, "models[1].id", "model id 'm-us' appears twice"),
            ("us.yaml", 14, "models[1]", "model 'm-open' is not in the catalog"),
        ],
        mutate={"models.yaml": [("id: m-open", "id: m-us")]},
    ),
    Case(
        "model origin unknown",
        [("models.yaml", 3, "models[0].origin", "origin 'JP' is not a jurisdiction")],
        mutate={"models.yaml": [("origin: US", "origin: JP")]},
    ),
    Case(
        "artifact",
        [("models.yaml", 5, "models[0].artifact", "not an artifact source; use an s3://")],
        mutate={"models.yaml": [("s3://bucket/m-us/", "ftp://bucket/m-us")]},
    ),
    Case(
        "artifact plain http",
        [("models.yaml", 5, "models[0].artifact", "'http://example.com/m' is not an artifact")],
        mutate={"models.yaml": [("s3://bucket/m-us/", "http://example.com/m")]},
    ),
    Case(
        "artifact mirror",
        [("models.yaml", 5, "models[0].artifact", "mirror 2: 'gopher://x/y' is not an artifact")],
        mutate={"models.yaml": [("s3://bucket/m-us/", "[s3://bucket/m-us/, gopher://x/y]")]},
    ),
    Case(
        "catalog missing",
        [("models.yaml", None, "", "the model catalog is missing")],
        files={"models.yaml": None},
    ),
    Case(
        "catalog not a list",
        [("models.yaml", 1, "models", "valid list (got a mapping)")],
        files={"models.yaml": "models:\n  id: m-us\n"},
    ),
    # ---- fleet settings
    Case(
        "unlisted_countries",
        [("fleet.yaml", 1, "unlisted_countries", "'deny' or 'any'")],
        mutate={"fleet.yaml": [("deny", "maybe")]},
    ),
    Case(
        "dns incomplete",
        [("fleet.yaml", 2, "dns.domain", "required field is missing")],
        mutate={"fleet.yaml": [("deny\n", "deny\ndns:\n  hosted_zone_id: Z1\n")]},
    ),
    # ---- directives
    Case(
        "directive jurisdiction unknown",
        [(D, 2, "jurisdiction", "'JP' is not a jurisdiction")],
        mutate={D: [("jurisdiction: US", "jurisdiction: JP")]},
    ),
    Case(
        "issuer of another jurisdiction",
        [
            (D, 3, "issuer", "'eu-gov' is not an authority of US (valid: us-court, us-gov)"),
            (D + ".sig", None, "", "0 valid signature(s)"),
            (D + ".sig", 1, "", "'eu-gov' is an authority of EU, not of this directive's"),
        ],
        mutate={D: [("issuer: us-gov", "issuer: eu-gov")]},
    ),
    Case(
        "directive model unknown",
        [(D, 6, "models[0]", "model 'm-x' is not in the catalog (valid: m-open, m-us, or '*'")],
        mutate={D: [("models: [m-us]", "models: [m-x]")]},
    ),
    Case(
        "directive without models",
        [(D, 6, "models", "at least 1 item")],
        mutate={D: [("models: [m-us]", "models: []")]},
    ),
    Case(
        "action unknown",
        [(D, 5, "action", "'suspend', 'withdraw', 'lift' or 'rotate'")],
        mutate={D: [("action: suspend", "action: pause")]},
    ),
    Case(
        "withdraw with audience",
        [(D, 7, "audience", "a withdraw has no audience")],
        mutate={D: [("action: suspend", "action: withdraw")]},
    ),
    Case(
        "audience entry",
        [(D, 8, "audience.nationality_not_in[0]", "'XY' is neither a jurisdiction")],
        mutate={D: [("nationality_not_in: [US]", "nationality_not_in: [XY]")]},
    ),
    Case(
        "audience predicate unknown",
        [(D, 8, "audience.nationality", "unknown key")],
        mutate={D: [("nationality_not_in: [US]", "nationality: [US]")]},
    ),
    Case(
        "naive timestamp",
        [(D, 9, "effective", "has no timezone")],
        mutate={D: [("2026-01-01T00:00:00Z", "2026-01-01T00:00:00")]},
    ),
    Case(
        "naive timestamp string",
        [(D, 9, "effective", "has no timezone")],
        mutate={D: [("2026-01-01T00:00:00Z", '"2026-01-01T00:00:00"')]},
    ),
    Case(
        "date without time",
        [(D, 9, "effective", "a date without a time")],
        mutate={D: [("2026-01-01T00:00:00Z", "2026-01-01")]},
    ),
    Case(
        "timestamp garbage",
        [(D, 9, "effective", "not an ISO 8601 timestamp")],
        mutate={D: [("2026-01-01T00:00:00Z", "next tuesday")]},
    ),
    Case(
        "effective missing",
        [(D, 1, "effective", "required field is missing")],
        mutate={D: [("effective: 2026-01-01T00:00:00Z\n", "")]},
    ),
    Case(
        "expires before effective",
        [(D, 10, "expires", "must be later than effective")],
        mutate={D: [("expires: null", "expires: 2026-01-01T01:00:00+02:00")]},
    ),
    Case(
        "supersedes unknown",
        [(D, 11, "supersedes", "'us-d0' is not a directive of the fleet")],
        mutate={D: [("supersedes: null", "supersedes: us-d0")]},
    ),
    Case(
        "supersedes itself",
        [(D, 11, "supersedes", "cannot supersede itself")],
        mutate={D: [("supersedes: null", "supersedes: us-d1")]},
    ),
    Case(
        "supersedes another jurisdiction",
        [
            (D, 11, "supersedes", "'eu-d1' belongs to jurisdiction EU"),
        ],
        mutate={D: [("supersedes: null", "supersedes: eu-d1")]},
        files={"directives/eu-d1.yaml": EU_DIRECTIVE},
    ),
    Case(
        "supersedes cycle",
        [(D, 11, "supersedes", "cycle: us-d1 -> us-d2 -> us-d1")],
        mutate={D: [("supersedes: null", "supersedes: us-d2")]},
        files={
            "directives/us-d2.yaml": DIRECTIVE_YAML.replace("id: us-d1", "id: us-d2").replace(
                "supersedes: null", "supersedes: us-d1"
            )
        },
    ),
    Case(
        "directive id twice",
        [(D, 1, "id", "directive id 'us-d1' is already used by ")],
        files={"directives/copy.yaml": DIRECTIVE_YAML},
    ),
    Case("unsigned", [(D + ".sig", None, "", "missing signature file")], sign=False),
    Case(
        "orphan signature",
        [("directives/old.yaml.sig", None, "", "signature file without a directive")],
        files={"directives/old.yaml.sig": "us-gov AAAA\n"},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_rule(case: Case, signed_fleet_factory: FleetFactory) -> None:
    root = signed_fleet_factory(
        case.files, mutate=case.mutate, sign_directives=case.sign, name="regions"
    )
    with pytest.raises(FleetError) as caught:
        load_fleet(root)
    got = caught.value.problems
    assert len(got) == len(case.expect), "\n".join(p.render() for p in got)
    for problem, (file, line, field_path, text) in zip(
        got, sorted(case.expect, key=lambda e: (str(root / e[0]), e[1] or 0, e[2])), strict=True
    ):
        assert problem.file == f"{root}/{file}", problem.render()
        assert problem.line == line, problem.render()
        assert problem.field == field_path, problem.render()
        assert text in problem.message, problem.render()


def test_every_problem_in_one_run(signed_fleet_factory: FleetFactory) -> None:
    root = signed_fleet_factory(
        {"extra.yaml": b"\x00"},
        mutate={
            "eu.yaml": [("region: eu-central-1", "region: nowhere")],
            "us.yaml": [("process_in: [US]", "process_in: [ZZ]")],
            "models.yaml": [("origin: US", "origin: QQ")],
            D: [("models: [m-us]", "models: [m-x]")],
        },
    )
    with pytest.raises(FleetError) as caught:
        load_fleet(root)
    files = {Path(p.file).name for p in caught.value.problems}
    assert files == {"extra.yaml", "eu.yaml", "us.yaml", "models.yaml", "us-d1.yaml"}


def test_rendering_is_file_line_field_message(signed_fleet_factory: FleetFactory) -> None:
    root = signed_fleet_factory(mutate={"us.yaml": [("process_in: [US]", "process_in: [ZZ]")]})
    with pytest.raises(FleetError) as caught:
        load_fleet_files(read_fleet_files(root), label="regions")
    (problem,) = caught.value.problems
    assert isinstance(problem, Problem)
    assert problem.render() == (
        "regions/us.yaml:11: residency.process_in[0]: process_in entry 'ZZ' is not a "
        "jurisdiction of the fleet (valid: EU, US)"
    )
