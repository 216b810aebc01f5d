"""docs/gateway.md's quick start, step by step, as a newcomer runs it: real processes, curl's
equivalent (httpx) and the official ``openai`` client, from nothing to a 200 and a 451."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.processes import spawn

pytestmark = pytest.mark.slow  # real gateway processes

REPO = Path(__file__).resolve().parents[2]


def sovereign(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOVEREIGN_")}
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


@pytest.fixture(scope="module")
def trial(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Steps 1-2: a copy of the example fleet applied on the local provider, and a dev key."""
    root = tmp_path_factory.mktemp("quickstart")
    shutil.copytree(REPO / "regions", root / "regions")
    applied = sovereign(root, "apply", "--sites", "local", "--yes")
    assert applied.returncode == 0, applied.stderr
    keygen = sovereign(root, "token", "keygen", "--out", "dev-idp.pem")
    assert keygen.returncode == 0, keygen.stderr
    assert (root / "dev-idp.pub.pem").is_file()
    assert (root / "dev-idp.pem").stat().st_mode & 0o077 == 0
    yield root


def test_without_stub_upstreams_the_gateway_says_what_to_do(trial: Path) -> None:
    started = sovereign(trial, "gateway", "--token-key", "dev-idp.pub.pem", "--port", "0")
    assert started.returncode == 1
    assert "no site can be reached" in started.stderr
    assert "--stub-upstreams" in started.stderr
    assert "Traceback" not in started.stderr


def test_a_private_key_is_refused_as_token_key(trial: Path) -> None:
    started = sovereign(trial, "gateway", "--token-key", "dev-idp.pem", "--stub-upstreams")
    assert started.returncode == 1 and "Traceback" not in started.stderr


def mint(trial: Path, *claims: str) -> str:
    minted = sovereign(trial, "token", "mint", "--key", "dev-idp.pem", *claims)
    assert minted.returncode == 0, minted.stderr
    token = minted.stdout.strip()
    assert token.count(".") == 2 and "\n" not in token
    return token


@pytest.fixture(scope="module")
def gateway_url(trial: Path) -> Iterator[str]:
    """Step 3: the gateway with --stub-upstreams, on a free port."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOVEREIGN_")}
    proc = spawn(
        [sys.executable, "-m", "orchestrator", "gateway", "--token-key", "dev-idp.pub.pem"]
        + ["--stub-upstreams", "--port", "0", "--json"],
        cwd=trial,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else ""
        yield str(json.loads(line)["url"])
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_curl_gets_a_200_and_a_451(trial: Path, gateway_url: str) -> None:
    body = {"model": "fable-5", "messages": [{"role": "user", "content": "hello"}]}
    with httpx.Client(trust_env=False, timeout=10) as client:
        german = mint(trial, "--residency", "DE", "--nationality", "DE", "--ttl", "1h")
        served = client.post(
            f"{gateway_url}/v1/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {german}"},
        )
        assert served.status_code == 200, served.text
        assert served.headers["x-sovereign-site"] == "aws-eu-central-1"
        visitor = mint(trial, "--residency", "US", "--nationality", "DE")
        refused = client.post(
            f"{gateway_url}/v1/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {visitor}"},
        )
    assert refused.status_code == 451
    reasons = refused.json()["explanation"]["sites"]["aws-us-east-1"]["reasons"]
    assert {r["rule"] for r in reasons} == {"directive"}


def test_the_openai_client_gets_an_answer_and_a_451(trial: Path, gateway_url: str) -> None:
    german = mint(trial, "--residency", "DE", "--nationality", "DE")
    with openai.OpenAI(
        base_url=f"{gateway_url}/v1",
        api_key=german,
        max_retries=0,
        http_client=httpx.Client(trust_env=False, timeout=10),
    ) as client:
        answer = client.chat.completions.create(
            model="fable-5", messages=[{"role": "user", "content": "hello"}]
        )
        assert answer.choices[0].message.content
    partner = mint(trial, "--residency", "US", "--nationality", "DE", "--group", "trusted-partners")
    visitor = mint(trial, "--residency", "US", "--nationality", "DE")
    for token, expected in ((partner, 200), (visitor, 451)):
        with openai.OpenAI(
            base_url=f"{gateway_url}/v1",
            api_key=token,
            max_retries=0,
            http_client=httpx.Client(trust_env=False, timeout=10),
        ) as client:
            try:
                client.chat.completions.create(
                    model="fable-5", messages=[{"role": "user", "content": "hello"}]
                )
                status = 200
            except openai.APIStatusError as exc:
                status = exc.status_code
        assert status == expected


def test_mint_refuses_a_public_key_and_explains_country_codes(trial: Path) -> None:
    wrong_key = sovereign(trial, "token", "mint", "--key", "dev-idp.pub.pem", "-r", "DE")
    assert wrong_key.returncode == 1 and "token keygen" in wrong_key.stderr
    uk = sovereign(trial, "token", "mint", "--key", "dev-idp.pem", "-r", "UK", "--json")
    assert uk.returncode == 1
    assert "did you mean GB" in json.loads(uk.stdout)["error"]["hint"]
