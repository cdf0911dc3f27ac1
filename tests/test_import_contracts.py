"""The emulator contracts in pyproject.toml name every module of the service, so that a module
added later is covered by them without anyone remembering to list it."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: The only parts of the service that may run the emulators, and the emulators themselves.
ALLOWED = {"service.cli", "service.commands", "service.emulators"}


def _contract(name: str) -> dict[str, Any]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contracts: list[dict[str, Any]] = config["tool"]["importlinter"]["contracts"]
    return next(c for c in contracts if c["name"] == name)


def _service_modules() -> set[str]:
    return {
        f"service.{path.stem}"
        for path in (ROOT / "service").iterdir()
        if not path.name.startswith(("_", "."))
        and (path.suffix == ".py" or (path / "__init__.py").is_file())
    }


def test_the_runtime_contract_names_every_module_but_the_commands() -> None:
    contract = _contract("The service's runtime never imports the emulators")
    assert set(contract["source_modules"]) == _service_modules() - ALLOWED
    assert contract["forbidden_modules"] == ["service.emulators"]


def test_the_emulators_contract_forbids_every_module_but_the_emulators() -> None:
    contract = _contract("The emulators import nothing of the service outside service.emulators")
    assert contract["source_modules"] == ["service.emulators"]
    assert set(contract["forbidden_modules"]) == _service_modules() - {"service.emulators"}
