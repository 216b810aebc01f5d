"""Provider options: explicit values win, ``SOVEREIGN_<OPTION>`` variables fill in."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.providers.aws.naming import bucket_name, sagemaker_base_name
from orchestrator.providers.aws.session import ProviderOptions, option_env_name


@pytest.fixture
def role_env() -> Iterator[str]:
    name = option_env_name("aws_sagemaker_role_arn")
    os.environ[name] = "arn:aws:iam::1:role/from-env"
    try:
        yield name
    finally:
        del os.environ[name]


def test_env_names() -> None:
    assert option_env_name("aws_sagemaker_role_arn") == "SOVEREIGN_AWS_SAGEMAKER_ROLE_ARN"
    assert option_env_name("aws_endpoint_url.eu-central-1") == (
        "SOVEREIGN_AWS_ENDPOINT_URL__EU_CENTRAL_1"
    )


def test_explicit_options_win_over_the_environment(role_env: str) -> None:
    assert ProviderOptions({}).get("aws_sagemaker_role_arn") == "arn:aws:iam::1:role/from-env"
    explicit = ProviderOptions({"aws_sagemaker_role_arn": "arn:aws:iam::2:role/x"})
    assert explicit["aws_sagemaker_role_arn"] == "arn:aws:iam::2:role/x"
    assert ProviderOptions({}).get("bucket_suffix", "none") == "none"


_ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-._", min_size=1, max_size=90)


@given(site=_ids, suffix=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", max_size=30))
def test_bucket_names_are_valid_and_deterministic(site: str, suffix: str) -> None:
    name = bucket_name(site, suffix)
    assert name == bucket_name(site, suffix)
    assert 3 <= len(name) <= 63
    assert name[0].isalnum() and name[-1].isalnum()
    assert set(name) <= set("abcdefghijklmnopqrstuvwxyz0123456789-") and "--" not in name


@given(site=_ids, model=_ids)
def test_sagemaker_names_are_valid(site: str, model: str) -> None:
    name = sagemaker_base_name(site, model)
    assert 1 <= len(name) <= 54 and name[0].isalnum() and name[-1].isalnum()
    assert set(name) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")


def test_every_kind_of_site_has_a_provider() -> None:
    from orchestrator.fleet.model import ProviderName
    from orchestrator.providers import provider_names

    assert {p.value for p in ProviderName} <= set(provider_names())


def test_every_kind_of_site_has_its_ownership_marks_in_export() -> None:
    from orchestrator.fleet.model import ProviderName
    from orchestrator.planning.export import _OWNERSHIP

    assert set(_OWNERSHIP) == set(ProviderName)
