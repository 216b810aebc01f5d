"""Secrets hygiene: private keys others can read are refused; secrets never reach logs or audit.

The second test runs the real commands a deployment runs (apply, token keygen/mint, directive
keygen/sign, a tenant attested and signed, key create/revoke/list, the gateway with its access
log, requests with tokens and API keys that are served, refused and unauthenticated) and then
greps everything they wrote (stdout, stderr, the decision log, the state store and its audit
log, every file under ``.sovereign``) for the tokens, the API keys, the private key material
and the prompt bodies they used.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.cli.support import run_cli
from tests.processes import spawn

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def sovereign(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOVEREIGN_")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=120,
        check=False,
    )


def key_material(pem: bytes) -> list[str]:
    """Every fragment of a PEM private key that would betray it: its base64 lines and body."""
    lines = [ln for ln in pem.decode().splitlines() if ln and not ln.startswith("-----")]
    body = "".join(lines)
    raw = base64.b64decode(body)[-32:]  # the Ed25519 seed ends the PKCS#8 structure
    return [*lines, body, base64.b64encode(raw).decode(), raw.hex()]


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
def test_a_private_key_others_can_read_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], mode: int
) -> None:
    monkeypatch.chdir(tmp_path)
    assert run_cli(capsys, "token", "keygen", "--out", "idp.pem")[0] == 0
    assert run_cli(capsys, "keygen", "--out", "authority.pem")[0] == 0
    # A directive that passes the schema: signing checks it first (there is no fleet here).
    Path("d.yaml").write_bytes((REPO / "regions/directives/us-doc-2026-06-26.yaml").read_bytes())
    for key, command in (
        ("idp.pem", ["token", "mint", "--key", "idp.pem", "-r", "DE"]),
        (
            "authority.pem",
            ["directive", "sign", "d.yaml", "--key", "authority.pem", "--authority", "x"],
        ),
    ):
        Path(key).chmod(mode)
        code, out, err = run_cli(capsys, *command, "--json")
        assert code == 1, out + err
        error = json.loads(out)["error"]
        assert key in error["message"] and "accessible by others" in error["message"]
        assert error["hint"] == f"make it readable by its owner only: chmod 600 {key}"
        assert error["exit_code"] == 1 and "Traceback" not in err
        assert not Path("d.yaml.sig").exists()
        Path(key).chmod(0o600)
    assert run_cli(capsys, "token", "mint", "--key", "idp.pem", "-r", "DE")[0] == 0
    assert (
        run_cli(
            capsys, "directive", "sign", "d.yaml", "--key", "authority.pem", "--authority", "x"
        )[0]
        == 0
    )
    assert Path("d.yaml.sig").read_text().startswith("x ")


def test_tokens_keys_and_prompts_never_reach_logs_or_audit(tmp_path: Path) -> None:
    shutil.copytree(REPO / "regions", tmp_path / "regions")
    outputs: list[str] = []

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        done = sovereign(tmp_path, *args)
        outputs.extend([done.stdout, done.stderr])
        return done

    # An attested tenant (docs/identity.md), applied with the fleet, and its API keys.
    assert run("keygen", "--out", "notary.pem", "--authority", "notary", "--json").returncode == 0
    public = json.loads(outputs[-2])["public_key"]
    with (tmp_path / "regions" / "fleet.yaml").open("a") as f:
        f.write(f'attestors:\n  - id: notary\n    public_key: "{public}"\n')
    (tmp_path / "regions" / "tenants").mkdir()
    (tmp_path / "regions" / "tenants" / "acme.yaml").write_text(
        "id: acme\nattested_by: notary\nreference: KYC\n"
        "principal: {residency: DE, nationalities: [DE]}\nexpires: 2099-01-01T00:00:00Z\n"
    )
    signed = run(
        "directive", "sign", "regions/tenants/acme.yaml", "--key", "notary.pem",
        "--authority", "notary",
    )  # fmt: skip
    assert signed.returncode == 0, signed.stderr
    assert run("apply", "--sites", "local", "--yes").returncode == 0
    api_keys = []
    for name in ("kept", "revoked"):
        made = sovereign(tmp_path, "key", "create", "--tenant", "acme", "--name", name, "--yes")
        assert made.returncode == 0, made.stderr
        outputs.append(made.stderr)  # stdout is the key itself: the one place it belongs
        api_keys.append(made.stdout.strip())
    made = sovereign(tmp_path, "key", "create", "--tenant", "acme", "--yes", "--json")
    assert made.returncode == 0, made.stderr
    outputs.append(made.stderr)
    revoked_id = json.loads(made.stdout)["id"]
    api_keys.append(json.loads(made.stdout)["key"])
    assert run("key", "revoke", revoked_id, "--yes").returncode == 0
    assert run("key", "list", "--json").returncode == 0
    assert run("token", "keygen", "--out", "idp.pem").returncode == 0
    assert run("keygen", "--out", "authority.pem", "--authority", "us-commerce").returncode == 0
    directive = tmp_path / "regions" / "directives" / "probe.yaml"
    directive.write_text("id: probe\n")
    run("directive", "sign", str(directive), "--key", "authority.pem", "--authority", "probe")
    directive.unlink()
    (tmp_path / "regions" / "directives" / "probe.yaml.sig").unlink(missing_ok=True)
    minted = sovereign(tmp_path, "token", "mint", "--key", "idp.pem", "-r", "DE", "-n", "DE")
    token = minted.stdout.strip()
    outputs.append(minted.stderr)  # stdout is the token itself: the one place it belongs
    visitor = sovereign(tmp_path, "token", "mint", "--key", "idp.pem", "-r", "US", "-n", "DE")
    visitor_token = visitor.stdout.strip()
    prompts = [f"canary-prompt-{i}-d41d8cd98f00b204" for i in range(5)]

    env = {k: v for k, v in os.environ.items() if not k.startswith("SOVEREIGN_")}
    env["PYTHONPATH"] = str(REPO)
    gateway = spawn(
        [sys.executable, "-m", "orchestrator", "gateway", "--token-key", "idp.pub.pem"]
        + ["--stub-upstreams", "--port", "0", "--json", "--decision-log", "decisions.jsonl"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert gateway.stdout is not None
        url = json.loads(gateway.stdout.readline())["url"]
        statuses = []
        with httpx.Client(trust_env=False, timeout=10) as client:
            bearers = (token, visitor_token, token[:-4] + "AAAA", api_keys[0], api_keys[2])
            for bearer, prompt in zip(bearers, prompts, strict=True):
                body = {"model": "fable-5", "messages": [{"role": "user", "content": prompt}]}
                answer = client.post(
                    f"{url}/v1/chat/completions",
                    json=body,
                    headers={"Authorization": f"Bearer {bearer}", "X-Prompt": prompt},
                )
                statuses.append(answer.status_code)
    finally:
        gateway.terminate()
        out, err = gateway.communicate(timeout=30)
        outputs.extend([out, err])
    assert statuses == [200, 451, 401, 200, 401]  # the key of acme; the revoked key
    assert run("audit", "verify").returncode == 0
    outputs.append(run("audit", "verify", "--json").stdout)

    written = [
        p.read_bytes().decode("latin-1")
        for p in (tmp_path / "regions" / ".sovereign").rglob("*")
        if p.is_file()
    ]
    assert written, "the run wrote no state to inspect"
    secrets = {
        "token": [token, token.split(".")[2], visitor_token, visitor_token.split(".")[2]],
        "token key": key_material((tmp_path / "idp.pem").read_bytes()),
        "authority key": key_material((tmp_path / "authority.pem").read_bytes()),
        "attestor key": key_material((tmp_path / "notary.pem").read_bytes()),
        # API keys, and their secret part alone (the 43 characters after sk-sov-)
        "API key": [*api_keys, *(k.removeprefix("sk-sov-") for k in api_keys)],
        "prompt": prompts,
    }
    decisions = (tmp_path / "decisions.jsonl").read_text()
    assert '"kind":"key"' in decisions.replace(" ", ""), "no key decision was logged"
    haystacks = [*outputs, *written, decisions]
    assert any("chat/completions" in h for h in haystacks), "no access log was written"
    for kind, needles in secrets.items():
        for needle in needles:
            leaked = [h[:200] for h in haystacks if needle in h]
            assert not leaked, f"{kind} material found in logs or state: {leaked}"
