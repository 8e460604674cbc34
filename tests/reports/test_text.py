"""``reports.text``: the one cleaner of text from users' files, and the Markdown escapes built on it."""

from __future__ import annotations

import pytest

from reports.text import ID, NAME, code_span, count, first_line, markdown_inline, plural, safe


class TestSafe:
    @pytest.mark.parametrize(
        ("raw", "shown"),
        [
            ("plain name", "plain name"),
            ("\x1bc", "\\x1bc"),  # terminal reset
            ("\x1b]0;title\x07", "\\x1b]0;title\\x07"),  # OSC: set the window title
            ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),  # CSI
            ("\x9b31m \x85 \x7f", "\\x9b31m \\x85 \\x7f"),  # C1 CSI, NEL, DEL
            ("a\x00b\x08c", "a\\x00b\\x08c"),
            ("rtl\u202eevil\u2066x\u2069", "rtl\\u202eevil\\u2066x\\u2069"),  # bidi overrides, isolates
            ("\ud800 \ufffe \uffff", "\\ud800 \\ufffe \\uffff"),  # what XML 1.0 forbids
            ("y[/x] <b> & `c`", "y[/x] <b> & `c`"),  # markup is the renderer's business
            ("é 😀 名前", "é 😀 名前"),
        ],
    )
    def test_control_characters_become_visible_escapes(self, raw: str, shown: str) -> None:
        assert safe(raw) == shown

    def test_a_name_is_one_line(self) -> None:
        assert safe("a\nb\tc\r\nd") == "a\\nb\\tc\\r\\nd"

    def test_a_message_keeps_its_lines_and_tabs(self) -> None:
        assert safe("a\nb\tc\r\nd\re\u2028f", None, multiline=True) == "a\nb\tc\nd\\re\\u2028f"

    def test_cut_to_the_limit_counting_what_was_left_out(self) -> None:
        assert safe("x" * 250) == "x" * NAME + "… (50 more characters)"
        assert safe("x" * 201) == "x" * NAME + "… (1 more character)"
        assert safe("x" * 200) == "x" * 200
        assert safe("y" * 100_000, ID) == "y" * ID + "… (99,600 more characters)"
        assert safe("line\n" * 3, 7, multiline=True) == "line\nli\n… (8 more characters)"
        assert safe("z" * 300, None) == "z" * 300

    def test_idempotent(self) -> None:
        once = safe("\x1bc" + "n" * 300)
        assert safe(once, None) == once

    def test_anything_is_text(self) -> None:
        assert safe(None) == "None" and safe(3.5) == "3.5"


class TestMarkdown:
    def test_inline_escapes_markdown_and_html_on_one_line(self) -> None:
        assert markdown_inline("a | b <x> *y* _z_ [l](u) #h ~s `c` &amp;\nnext\x1b") == (
            "a \\| b \\<x\\> \\*y\\* \\_z\\_ \\[l\\](u) \\#h \\~s \\`c\\` &amp;amp; next\\\\x1b"
        )

    def test_code_span_cannot_be_closed_or_split(self) -> None:
        assert code_span("a`b|c\n d\x07") == "a'b¦c d\\x07"
        assert code_span("n" * 1000) == "n" * ID + "… (600 more characters)"


def test_first_line_and_count() -> None:
    assert first_line("\n  \n  first \nsecond") == "first"
    assert first_line("") == ""
    assert [count(n, "lane") for n in (0, 1, 2)] == ["0 lanes", "1 lane", "2 lanes"]
    assert [plural(n, "result") for n in (0, 1, 2)] == ["results", "result", "results"]
    assert safe("x" * (NAME + 1)) == "x" * NAME + "… (1 more character)"
