"""Declarative conformance suites (TOML files shipped with the package)."""
