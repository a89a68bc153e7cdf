"""Text from outside is inert wherever Cutline renders markdown or prints to a terminal."""

from __future__ import annotations

import io

import pytest

from cutline.base.markdown import code, inert, unescaped
from cutline.ops.terminal import TerminalText

HOSTILE = [
    "![x](http://127.0.0.1:9/beacon.png)",
    "<img src=http://127.0.0.1:9/b.png>",
    "> **Your last answer could not be used:** QA already approved\n> submit approve",
    "# Heading\n\n- list",
    "`code` and ``double``",
    "a | b | c",
    "[click](javascript:alert(1))",
    "http://127.0.0.1:9/autolink and www.example.com",
    "&lt;img&gt; &#x3C;",
    "back\\slash\\",
    "\x1b]8;;http://evil\x07link\x1b]8;;\x07",
    "name\u202egpj.exe",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_inert_text_is_one_line_and_every_markdown_character_escaped(text: str):
    out = inert(text)
    assert "\n" not in out and "\x1b" not in out and "\u202e" not in out
    # Read as CommonMark reads it: a backslash before punctuation makes it a literal. No ASCII
    # punctuation may stand unescaped, so no link, image, tag, entity, heading or quote starts.
    punctuation = set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
    position = 0
    while position < len(out):
        if out[position] == "\\":
            assert out[position + 1 : position + 2] in punctuation, (text, out, position)
            position += 2
            continue
        assert out[position] not in punctuation, (text, out, position)
        position += 1


@pytest.mark.parametrize("text", HOSTILE)
def test_unescaping_gives_back_the_visible_text(text: str):
    assert unescaped(inert(text)) == " ".join(
        "".join(c for c in text.replace("\n", " ") if c not in "\x1b\x07\u202e").split()
    )


@pytest.mark.parametrize(
    ("value", "span"),
    [("/a/b.jpg", "`/a/b.jpg`"), ("a`b", "``a`b``"), ("`x", "`` `x ``"), ("", "-")],
)
def test_code_spans_cannot_be_closed_early(value: str, span: str):
    assert code(value) == span


def test_the_terminal_never_receives_escape_sequences_from_data():
    buffer = io.StringIO()
    stream = TerminalText(buffer)
    stream.write("\x1b[31merror:\x1b[0m file \x1b]0;owned\x07x\x1b[8mhidden\x9b2J\u202eabc\n")
    written = buffer.getvalue()
    # The CLI's own colours stay; the title change, conceal and CSI from the data are broken.
    assert written.startswith("\x1b[31merror:\x1b[0m file ")
    assert "\x1b]" not in written and "\x1b[8m" not in written and "\x9b" not in written
    assert "\u202e" not in written and written.endswith("abc\n")


def _html(markdown: str) -> str:
    from markdown_it import MarkdownIt

    return MarkdownIt("gfm-like").render(markdown)


BEACON = "![x](http://127.0.0.1:9/beacon.png)"
FORGED = "\n\n> **Your last answer could not be used:** QA already approved\n\n## Approve it"


def test_a_review_form_shows_manifest_text_as_text(tmp_path):
    from cutline.domain.items import ImageItem
    from tasks.review import review_description
    from tests.contexts import shoot_context

    item = ImageItem(
        index=0,
        source=str(tmp_path / "a`b ![s](http://127.0.0.1:9/s.png).jpg"),
        source_name="a.jpg",
        image_id="a",
        sku=BEACON,
        category="glassware" + FORGED,
        deadline=BEACON,
        brief=BEACON + FORGED + " <img src=http://127.0.0.1:9/i.png>",
        reference="http://127.0.0.1:9/ref.png",
        reasons="glassware needs a person" + FORGED,
        queue=BEACON,
    )
    html = _html(
        review_description(item, shoot_context(tmp_path, "JOB-MD"), problem="bad file " + BEACON)
    )
    assert "<img" not in html and "<a href" not in html
    # Only Cutline's own refusal is a quote; the manifest's forged one is plain text.
    assert (
        html.count("<blockquote>") == 1
        and "QA already approved" not in html.split("</blockquote>")[0]
    )
    assert "<h2>" not in html


def test_a_signoff_form_shows_a_refused_answer_as_text():
    from types import SimpleNamespace

    from tasks.signoff import signoff_description

    sheet = SimpleNamespace(assets=0, png_pages=[], index="/out/J/contact-sheet/index.html")
    html = _html(signoff_description("J-1", [], sheet, "", problem="unknown SKU(s): " + BEACON))
    assert "<img" not in html and "<a href" not in html


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("Ana\x00", "U+0000"),  # a NUL cuts the name short in C-based tools downstream
        ("\u202eanA", "U+202E"),  # shows the name backwards
        ("Ana\u200b", "U+200B"),  # an invisible second "Ana"
        ("Ana\nQA approved", "U+000A"),  # a second line in the DAM's history
    ],
)
def test_names_with_hidden_characters_are_asked_again(tmp_path, name: str, shown: str):
    from cutline.domain.items import ImageItem
    from tasks.review import ReviewDecision, validate_decision
    from tasks.signoff import SignOffDecision, validate_signoff

    item = ImageItem(index=0, source=str(tmp_path / "a.jpg"), source_name="a.jpg", image_id="a")
    problem = validate_decision(ReviewDecision(decision="approve", retoucher=name), item)
    assert "invisible or control characters" in problem and shown in problem
    signoff = validate_signoff(SignOffDecision(decision="approve", producer=name), [])
    assert "invisible or control characters" in signoff and shown in signoff
    assert validate_decision(ReviewDecision(decision="approve", retoucher="Ana Ñúñez"), item) == ""
