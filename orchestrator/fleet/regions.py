"""Which cloud region names exist, and which country each one is in.

Validation must reject a typo such as ``eu-centrall-1`` before anything is planned, and must
catch a site whose declared ``country`` contradicts its region (a German site declared in
``us-east-1``). AWS names come from data, not from a hand-typed list: botocore ships the
partition catalogue as ``botocore/data/partitions.json`` (7 kB: each partition's regions and the
pattern its region names follow; the 1.2 MB ``endpoints.json``, per-service endpoints, is read
only when a botocore too old to have it is installed). This module reads that file directly,
*without importing botocore* (the layer contract keeps cloud SDKs inside provider modules, and
``validate`` should not pay for importing an SDK). Google Cloud has no such offline catalogue in
its client libraries, so its regions are the documented table below
(https://cloud.google.com/about/locations, checked 2026-11).

The region -> country table covers the regions whose country is known here; for any other
region the consistency check is skipped (the name itself is still checked).
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path

from orchestrator.fleet.model import ProviderName

# Google Cloud regions (name -> ISO 3166-1 alpha-2 country of the data centres).
GCP_REGIONS: dict[str, str] = {
    "africa-south1": "ZA",
    "asia-east1": "TW",
    "asia-east2": "HK",
    "asia-northeast1": "JP",
    "asia-northeast2": "JP",
    "asia-northeast3": "KR",
    "asia-south1": "IN",
    "asia-south2": "IN",
    "asia-southeast1": "SG",
    "asia-southeast2": "ID",
    "australia-southeast1": "AU",
    "australia-southeast2": "AU",
    "europe-central2": "PL",
    "europe-north1": "FI",
    "europe-north2": "SE",
    "europe-southwest1": "ES",
    "europe-west1": "BE",
    "europe-west2": "GB",
    "europe-west3": "DE",
    "europe-west4": "NL",
    "europe-west6": "CH",
    "europe-west8": "IT",
    "europe-west9": "FR",
    "europe-west10": "DE",
    "europe-west12": "IT",
    "me-central1": "QA",
    "me-central2": "SA",
    "me-west1": "IL",
    "northamerica-northeast1": "CA",
    "northamerica-northeast2": "CA",
    "northamerica-south1": "MX",
    "southamerica-east1": "BR",
    "southamerica-west1": "CL",
    "us-central1": "US",
    "us-east1": "US",
    "us-east4": "US",
    "us-east5": "US",
    "us-south1": "US",
    "us-west1": "US",
    "us-west2": "US",
    "us-west3": "US",
    "us-west4": "US",
}

# AWS region -> country, for the regions whose location AWS documents publicly. The *names*
# are validated against botocore's data; this table only feeds the country consistency check.
AWS_REGION_COUNTRY: dict[str, str] = {
    "af-south-1": "ZA",
    "ap-east-1": "HK",
    "ap-east-2": "TW",
    "ap-northeast-1": "JP",
    "ap-northeast-2": "KR",
    "ap-northeast-3": "JP",
    "ap-south-1": "IN",
    "ap-south-2": "IN",
    "ap-southeast-1": "SG",
    "ap-southeast-2": "AU",
    "ap-southeast-3": "ID",
    "ap-southeast-4": "AU",
    "ap-southeast-5": "MY",
    "ap-southeast-6": "NZ",
    "ap-southeast-7": "TH",
    "ca-central-1": "CA",
    "ca-west-1": "CA",
    "cn-north-1": "CN",
    "cn-northwest-1": "CN",
    "eu-central-1": "DE",
    "eu-central-2": "CH",
    "eu-north-1": "SE",
    "eu-south-1": "IT",
    "eu-south-2": "ES",
    "eu-west-1": "IE",
    "eu-west-2": "GB",
    "eu-west-3": "FR",
    "eusc-de-east-1": "DE",
    "il-central-1": "IL",
    "me-central-1": "AE",
    "me-south-1": "BH",
    "mx-central-1": "MX",
    "sa-east-1": "BR",
    "us-east-1": "US",
    "us-east-2": "US",
    "us-gov-east-1": "US",
    "us-gov-west-1": "US",
    "us-west-1": "US",
    "us-west-2": "US",
}


def _botocore_data_file(name: str) -> Path | None:
    # find_spec locates the package on disk without executing its __init__.
    spec = importlib.util.find_spec("botocore")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "data" / name
        if candidate.is_file():
            return candidate
    return None


@cache
def aws_regions() -> frozenset[str]:
    """Every AWS region name of every partition in botocore's partition data.

    Pseudo-regions such as ``aws-global`` are left out: a partition's names must match its own
    ``regionRegex``. Falls back to ``endpoints.json`` for an older botocore, and to the country
    table's keys if neither can be found or read, so a broken install narrows what validates
    rather than accepting anything (fail closed).
    """
    try:
        names = _partition_regions() or _endpoint_regions()
    except (OSError, ValueError, AttributeError, TypeError, re.error):
        names = set()
    return frozenset(names) or frozenset(AWS_REGION_COUNTRY)


def _partition_regions() -> set[str]:
    path = _botocore_data_file("partitions.json")
    if path is None:
        return set()
    data = json.loads(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for partition in data.get("partitions", []):
        pattern = re.compile(partition.get("regionRegex", "$^"))
        names.update(r for r in partition.get("regions", {}) if pattern.match(r))
    return names


def _endpoint_regions() -> set[str]:
    path = _botocore_data_file("endpoints.json")
    if path is None:
        return set()
    data = json.loads(path.read_text(encoding="utf-8"))
    return {
        region
        for partition in data.get("partitions", [])
        for region in partition.get("regions", {})
    }


def gcp_regions() -> frozenset[str]:
    """Every Google Cloud region name in the documented table."""
    return frozenset(GCP_REGIONS)


# Per cloud: its region names, and the country of each region it documents. ``local`` (any
# region name) has none.
_REGION_NAMES: dict[str, Callable[[], frozenset[str]]] = {
    ProviderName.AWS: aws_regions,
    ProviderName.GCP: gcp_regions,
}
_REGION_COUNTRIES: dict[str, Mapping[str, str]] = {
    ProviderName.AWS: AWS_REGION_COUNTRY,
    ProviderName.GCP: GCP_REGIONS,
}


def known_regions(provider: str) -> frozenset[str] | None:
    """Valid region names for ``provider``; ``None`` when any name is accepted (``local``)."""
    names = _REGION_NAMES.get(provider)
    return None if names is None else names()


def region_country(provider: str, region: str) -> str | None:
    """The country a cloud region is in, when known."""
    return _REGION_COUNTRIES.get(provider, {}).get(region)
