"""Renderers of result objects: console, JSON, JUnit XML, Markdown, HTML."""
