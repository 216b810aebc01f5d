"""The Pulumi Automation API behind three calls: ``require_cli``, ``Stacks.preview``, ``Stacks.up``.

``pulumi.automation`` drives the Pulumi CLI, which Sovereign does not ship: ``require_cli``
finds it (``PATH``, then ``~/.pulumi/bin``) before anything else happens, and otherwise raises
``EngineUnavailableError`` (exit 1) saying how to install it, so ``--engine pulumi`` without
the CLI fails cleanly and nothing else is touched. Self-managed backends encrypt stack config
with a passphrase, so that is checked up front too.

``pulumi.automation`` is imported inside the calls that need it: importing this module (as
``open_session`` does to run the checks) costs nothing, and no ``pulumi`` exception escapes:
failures become ``PermanentProviderError`` with the CLI's last words.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orchestrator
from orchestrator.errors import EngineUnavailableError, PermanentProviderError
from orchestrator.providers.pulumi.stacks import PreviewStep, spec_of_inputs, stack_name

PROJECT = "sovereign"
PROGRAM_ENV = "SOVEREIGN_PULUMI_PROGRAM"
INSTALL_HINT = (
    "install the Pulumi CLI and put it on PATH: `curl -fsSL https://get.pulumi.com | sh` "
    "(Linux, macOS), `brew install pulumi/tap/pulumi` or `choco install pulumi`; see "
    "https://www.pulumi.com/docs/install/. Or leave out --engine pulumi to use the built-in "
    "providers."
)
PASSPHRASE_VARS = ("PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE")


def find_cli(env: Mapping[str, str] | None = None) -> Path | None:
    """The ``pulumi`` executable: on ``PATH``, else where the installer puts it."""
    env = os.environ if env is None else env
    found = shutil.which("pulumi", path=env.get("PATH", ""))
    if found:
        return Path(found)
    home = env.get("PULUMI_HOME") or str(Path(env.get("HOME", "~")).expanduser() / ".pulumi")
    candidate = Path(home) / "bin" / "pulumi"
    return candidate if candidate.is_file() and os.access(candidate, os.X_OK) else None


def require_cli(env: Mapping[str, str] | None = None) -> Path:
    """The Pulumi CLI, or ``EngineUnavailableError`` naming what is missing and how to fix it."""
    env = os.environ if env is None else env
    cli = find_cli(env)
    if cli is None:
        raise EngineUnavailableError(
            "--engine pulumi needs the Pulumi CLI, and `pulumi` is not installed (not on PATH, "
            "not in ~/.pulumi/bin)",
            hint=INSTALL_HINT,
        )
    if not any(env.get(v) for v in PASSPHRASE_VARS):
        raise EngineUnavailableError(
            "--engine pulumi keeps the stacks beside the state (a self-managed backend), and "
            "Pulumi needs a passphrase to encrypt their config",
            hint="export PULUMI_CONFIG_PASSPHRASE (or PULUMI_CONFIG_PASSPHRASE_FILE) for every "
            "run, the same each time",
        )
    return cli


def default_program_dir() -> Path:
    """``infra/`` of this checkout, unless ``SOVEREIGN_PULUMI_PROGRAM`` names another."""
    named = os.environ.get(PROGRAM_ENV)
    if named:
        return Path(named).resolve()
    return Path(orchestrator.__file__).resolve().parents[1] / "infra"


@dataclass(frozen=True)
class Stacks:
    """The jurisdictions' stacks of one backend, run from one program directory."""

    cli: Path
    backend_url: str
    work_dir: Path  # project settings and stack config files (not the program directory)
    program_dir: Path
    fleet_dir: Path

    def _stack(self, jurisdiction: str, stack_input: str) -> Any:
        from pulumi import automation as auto

        self.work_dir.mkdir(parents=True, exist_ok=True)
        runtime_options = {"virtualenv": sys.prefix} if sys.prefix != sys.base_prefix else None
        settings = auto.ProjectSettings(
            name=PROJECT,
            runtime=auto.ProjectRuntimeInfo(name="python", options=runtime_options),
            main=str(self.program_dir),
        )
        root = self.cli.parent.parent if self.cli.parent.name == "bin" else None
        options = auto.LocalWorkspaceOptions(
            work_dir=str(self.work_dir),
            project_settings=settings,
            env_vars={"PULUMI_BACKEND_URL": self.backend_url, "PULUMI_SKIP_UPDATE_CHECK": "1"},
            pulumi_command=auto.PulumiCommand(root=str(root) if root else None),
        )
        try:
            stack = auto.create_or_select_stack(
                stack_name(jurisdiction), project_name=PROJECT, work_dir=str(self.work_dir),
                opts=options,
            )  # fmt: skip
            stack.set_all_config(
                {
                    "sovereign:input": auto.ConfigValue(stack_input),
                    "sovereign:fleet": auto.ConfigValue(str(self.fleet_dir.resolve())),
                }
            )
        except auto.errors.CommandError as exc:
            raise _failure(jurisdiction, "select", exc) from None
        return stack

    def preview(self, jurisdiction: str, stack_input: str) -> tuple[PreviewStep, ...]:
        """Every step a refreshing preview of the jurisdiction's stack reports."""
        from pulumi import automation as auto

        steps: list[PreviewStep] = []

        def on_event(event: Any) -> None:
            step = step_of_event(event)
            if step is not None:
                steps.append(step)

        stack = self._stack(jurisdiction, stack_input)
        try:
            stack.preview(refresh=True, on_event=on_event, diff=False)
        except auto.errors.CommandError as exc:
            raise _failure(jurisdiction, "preview", exc) from None
        return tuple(steps)

    def up(self, jurisdiction: str, stack_input: str, targets: Sequence[str]) -> None:
        """Carry out the program for ``targets`` only (and the resources they depend on)."""
        from pulumi import automation as auto

        stack = self._stack(jurisdiction, stack_input)
        try:
            stack.up(target=list(targets), target_dependents=True, suppress_progress=True)
        except auto.errors.CommandError as exc:
            raise _failure(jurisdiction, "up", exc) from None


def step_of_event(event: Any) -> PreviewStep | None:
    """A ``pulumi.automation.EngineEvent`` as a preview step, or None for any other event."""
    pre = getattr(event, "resource_pre_event", None)
    metadata = getattr(pre, "metadata", None)
    if metadata is None:
        return None
    op = getattr(metadata.op, "value", metadata.op)
    old = getattr(metadata, "old", None)
    held = spec_of_inputs(str(metadata.type), getattr(old, "inputs", None))
    return PreviewStep(
        str(op), str(metadata.urn), tuple(str(d) for d in metadata.diffs or ()), held
    )


def _failure(jurisdiction: str, action: str, exc: Exception) -> PermanentProviderError:
    text = str(exc).strip().splitlines()
    tail = " | ".join(line.strip() for line in text[-3:] if line.strip())
    return PermanentProviderError(
        f"pulumi {action} of stack {jurisdiction} failed: {tail or type(exc).__name__}",
        hint="run the same by hand in infra/ (see infra/README.md) to see the whole output",
    )
