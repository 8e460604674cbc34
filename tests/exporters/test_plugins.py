"""Plug-ins named in environment variables (exporters/plugins.py): one parser for exporters and runtimes."""

from __future__ import annotations

import pytest

from exporters.plugins import PluginError, load_target, plugins_from_env

VARIABLE = "TEST_PLUGINS"


def parse(monkeypatch: pytest.MonkeyPatch, value: str) -> dict[str, str]:
    monkeypatch.setenv(VARIABLE, value)
    return plugins_from_env(VARIABLE)


class TestParse:
    def test_unset_and_empty(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv(VARIABLE, raising=False)
        assert plugins_from_env(VARIABLE) == {}
        assert parse(monkeypatch, "") == {}
        assert parse(monkeypatch, " , ,") == {}

    def test_entries_in_written_order_with_spaces_trimmed(self, monkeypatch: pytest.MonkeyPatch) -> None:
        plugins = parse(monkeypatch, " b = pkg.mod:B ,a=pkg.other:A,, ")
        assert plugins == {"b": "pkg.mod:B", "a": "pkg.other:A"}
        assert list(plugins) == ["b", "a"]

    def test_a_later_entry_replaces_an_earlier_one(self, monkeypatch: pytest.MonkeyPatch) -> None:
        assert parse(monkeypatch, "a=m:First,a=m:Second") == {"a": "m:Second"}

    @pytest.mark.parametrize(
        "entry",
        ["crash", "crash=", "crash=module", "crash=module:", "crash=:Class", "=module:Class", " = module:Class"],
    )
    def test_a_malformed_entry_names_the_variable_and_the_entry(
        self, monkeypatch: pytest.MonkeyPatch, entry: str
    ) -> None:
        with pytest.raises(PluginError) as info:
            parse(monkeypatch, f"ok=m:C,{entry}")
        assert str(info.value) == f"{VARIABLE}: malformed entry {entry.strip()!r}: expected id=module:Class"
        assert isinstance(info.value, ValueError)

    def test_parsing_imports_nothing(self, monkeypatch: pytest.MonkeyPatch) -> None:
        assert parse(monkeypatch, "x=no.such.module:Thing") == {"x": "no.such.module:Thing"}


def test_load_target() -> None:
    assert load_target("exporters.plugins:plugins_from_env") is plugins_from_env
    with pytest.raises(ModuleNotFoundError):
        load_target("no.such.module:Thing")
