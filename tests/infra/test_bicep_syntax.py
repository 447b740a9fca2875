"""Gate 1: every .bicep file under infra/ parses with tree-sitter-bicep, with no ERROR or
MISSING node. Separate from checkov, which skips a file it cannot parse without failing."""

from __future__ import annotations

import pytest

from tests.infra.bicep import INFRA, bicep_files, parse, parse_source, syntax_errors

FILES = bicep_files()


def test_the_templates_are_there() -> None:
    names = {p.relative_to(INFRA).as_posix() for p in FILES}
    expected = {
        "main.bicep",
        "app/identity.bicep",
        "app/storage.bicep",
        "app/keyvault.bicep",
        "app/monitoring.bicep",
        "app/function.bicep",
        "app/rbac.bicep",
        "app/network.bicep",
    }
    assert expected <= names, f"missing: {sorted(expected - names)}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.relative_to(INFRA).as_posix())
def test_bicep_file_parses_without_errors(path) -> None:
    parsed = parse(path)
    errors = syntax_errors(parsed.root, parsed.rel)
    assert not errors, "Bicep syntax errors:\n" + "\n".join(errors)


@pytest.mark.parametrize(
    "source",
    [
        "resource sa 'Microsoft.Storage/storageAccounts@2023-05-01' = {\n  name: 'x'\n",
        "param p string =\nvar v = 1\n",
        "var v = {\n  a: 'x'\n  b: \n}\n",
        "output o string = concat('a', \n",
    ],
    ids=["unclosed-object", "param-without-value", "property-without-value", "unclosed-call"],
)
def test_the_gate_catches_broken_bicep(source: str) -> None:
    # Guards against a grammar that silently accepts anything.
    errors = syntax_errors(parse_source(source), "snippet.bicep")
    assert errors and errors[0].startswith("snippet.bicep:")
