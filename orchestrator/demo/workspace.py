"""A throwaway copy of the fleet where every site runs on the local provider.

The demo must work offline and must never write into the real ``regions/``: it copies the fleet
to a temporary directory, rewrites each site's ``provider`` to ``local`` (ids, regions and
countries stay, so every legal decision is the same) and drops ``endpoint`` (local sites are
served by stub upstreams). Directive files are held back so the story can add them one by one,
exactly as an operator would: copy the signed file and its ``.sig`` into ``directives/``.
Region profiles are not signed, so rewriting them invalidates nothing; directives are copied
byte for byte.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import UsageError
from orchestrator.fleet.loader import load_fleet

_PROVIDER = re.compile(r"^(?P<lead>\s*(?:-\s+)?)provider:\s*\S+", re.MULTILINE)
_ENDPOINT = re.compile(r"^\s+endpoint:.*\n", re.MULTILINE)  # a site's key, never a list opener


@dataclass(frozen=True)
class Workspace:
    root: Path  # the temporary directory
    fleet_dir: Path  # root / "regions"
    held_back: Path  # the original directive files, to be added during the story

    def add_directive(self, name: str) -> Path:
        """Copy directive ``name`` (``NAME.yaml``) and its signature into the fleet."""
        target_dir = self.fleet_dir / "directives"
        target_dir.mkdir(exist_ok=True)
        src = self.held_back / name
        if not src.is_file():
            raise UsageError(
                f"the demo needs directive {name} in the source fleet's directives/",
                hint="run the demo against the example fleet: sovereign demo --fleet regions",
            )
        shutil.copy2(src, target_dir / name)
        sig = self.held_back / f"{name}.sig"
        if sig.is_file():
            shutil.copy2(sig, target_dir / sig.name)
        return target_dir / name


def _localise(text: str) -> str:
    text = _PROVIDER.sub(lambda m: f"{m.group('lead')}provider: local", text)
    return _ENDPOINT.sub("", text)


def prepare_workspace(source: Path, root: Path) -> Workspace:
    """Copy ``source`` under ``root``, localise its sites and hold its directives back."""
    if not source.is_dir():
        raise UsageError(
            f"fleet directory not found: {source}", hint="pass --fleet DIR (default regions)"
        )
    fleet_dir = root / "regions"
    shutil.copytree(source, fleet_dir, ignore=shutil.ignore_patterns(".sovereign", ".*"))
    held_back = root / "held-back-directives"
    held_back.mkdir()
    directives = fleet_dir / "directives"
    if directives.is_dir():
        for path in sorted(directives.iterdir()):
            if path.is_file():
                shutil.move(str(path), held_back / path.name)
    for path in sorted(fleet_dir.iterdir()):
        if path.is_file() and path.suffix in (".yaml", ".yml"):
            path.write_text(_localise(path.read_text()))
    fleet = load_fleet(fleet_dir)
    remote = sorted(s.id for s in fleet.sites.values() if s.provider != "local")
    if remote:
        raise UsageError(
            f"could not move sites {', '.join(remote)} to the local provider",
            hint="write each site's provider on its own line: `provider: aws`",
        )
    return Workspace(root, fleet_dir, held_back)
