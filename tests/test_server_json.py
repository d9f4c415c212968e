"""server.json (the MCP registry entry) is valid against the registry's schema and agrees with the package."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import somna

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT.parent / "shared" / "schemas" / "server.schema.2025-12-11.json"
SCHEMA_URL = "https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json"


@pytest.fixture(scope="module")
def server() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((ROOT / "server.json").read_text(encoding="utf-8"))
    return data


def test_server_json_is_valid_against_the_registry_schema(server: dict[str, Any]) -> None:
    if not SCHEMA.is_file():
        pytest.skip(f"no local copy of the registry schema at {SCHEMA}; this test never fetches it")
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    assert schema["$id"] == server["$schema"] == SCHEMA_URL
    validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(server), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_a_broken_entry_is_caught(server: dict[str, Any]) -> None:
    """The schema check has teeth: the registry's own limits are enforced (offline, local $refs only)."""
    if not SCHEMA.is_file():
        pytest.skip(f"no local copy of the registry schema at {SCHEMA}")
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text(encoding="utf-8")))
    assert not validator.is_valid({**server, "description": "x" * 101})
    assert not validator.is_valid({**server, "name": "somna"})
    assert not validator.is_valid({**server, "packages": [{**server["packages"][0], "version": "latest"}]})


def test_server_json_matches_the_package(server: dict[str, Any]) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    (package,) = server["packages"]
    assert server["version"] == package["version"] == project["version"] == somna.__version__
    assert package["registryType"] == "pypi" and package["identifier"] == project["name"]
    assert package["transport"] == {"type": "stdio"}
    assert [a["value"] for a in package["packageArguments"]] == ["serve"]
    assert project["scripts"]["somna"] == "somna.cli:main"
    assert {v["name"]: v["isRequired"] for v in package["environmentVariables"]} == {"SOMNA_HOME": False}
