r"""proxy.model.patterns: Smithy (ECMA-262) patterns searched the way ECMA does, in Python."""

from __future__ import annotations

import functools
import unicodedata

import botocore.loaders
import botocore.model
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.model import patterns
from proxy.model.patterns import always_found, compile_ecma_pattern
from proxy.model.validate import ValidationOptions, compile_input_validator

SERVICES = ("ivs", "ivs-realtime", "ivschat")
TAG_KEY = r"([\p{L}\p{Z}\p{N}_.:/=+\-@]+)"  # ivs TagKey; TagValue is the same with `*`


def search(pattern: str, text: str) -> bool:
    compiled = compile_ecma_pattern(pattern)
    assert compiled is not None, pattern
    return bool(compiled(text))


def test_ecma_pattern_translation() -> None:
    assert search("^$|^arn:x$", "arn:x") and search("^$|^arn:x$", "")
    assert not search("^$|^arn:x$", "arn:x\n")  # ECMA $ is the true end
    assert search("a.b", "a-b") and not search("a.b", "a\rb") and not search("a.b", "a\u2028b")
    assert search(r"^\d+$", "123") and not search(r"^\d+$", "١٢٣")  # ECMA \d is ASCII
    assert search(r"^\s$", "\u00a0") and search(r"^\s$", "\ufeff") and not search(r"^\s$", "\x1c")
    assert compile_ecma_pattern(r"(?<year>\d{4})-\k") is None  # \k is refused, not misread
    assert compile_ecma_pattern(r"(?<year>\d{4})") is not None
    assert search("^a{,2}$", "a{,2}") and not search("^a{,2}$", "aa")
    assert search(r"[\\p]", "\\") and not search(r"^[\\p]$", "x")  # an escaped \, no property


def test_unicode_categories() -> None:
    assert all(search(TAG_KEY, s) for s in ("Env", "環境", "\u00a0", "٣", "é", "!é"))
    assert not any(search(TAG_KEY, s) for s in ("", "!!!", "#$%", "\t"))
    assert search(r"\P{L}+", "ab1") and not search(r"\P{L}+", "abc")
    assert search(r"^[^^\p{L}]$", "1") and not search(r"^[^^\p{L}]$", "^")  # a literal ^
    assert search(r"^\p{Letter}?$", "") and not search(r"^\p{Letter}?$", "ab")
    assert search(r"a\p{Lu}b", "xaÉb") and not search(r"a\p{Lu}b", "aéb")


@pytest.mark.parametrize("pattern", [r"[\P{L}]", r"\cJ", r"[]", r"[^]", r"(?<=a+)b", r"\p{Script=Greek}",
                                     r"\u{1F600}", "(", "[a-", "\\", r"\p{Q}", r"[\p{Lx}a]", r"(\p{L}",
                                     r"a\p{Qq}"])
def test_untranslatable_patterns_are_skipped_not_fatal(pattern: str) -> None:
    assert compile_ecma_pattern(pattern) is None


@pytest.mark.parametrize("pattern", [r"[a-zA-Z0-9-_]*", r"([\p{L}\p{Z}\p{N}_.:/=+\-@]*)", r"\p{L}*",
                                     r"(a|b)?", r"x*(?:y?)"])
def test_a_pattern_every_string_has_is_always_found(pattern: str) -> None:
    # Search semantics: found, empty, at the start of anything; the validator skips them.
    assert compile_ecma_pattern(pattern) is always_found


@pytest.mark.parametrize("pattern", [r"^[a-z]*$", r"a*$", r"(?!x)", r"\b", r"\B", r"(?<!x)y*", r"x"])
def test_assertions_or_consumption_are_searched(pattern: str) -> None:
    assert compile_ecma_pattern(pattern) is not always_found


# ---- \p: exact, and never costly at start-up ----------------------------------------------


@functools.cache
def category_edges() -> tuple[str, ...]:
    """The first and last character of every run of one general category, and all ASCII.

    A one-class search decides by a character's category (and, here, ASCII literals), so
    agreeing on these agrees on every character.
    """
    edges, previous = [chr(i) for i in range(128)], ""
    for cp in range(0x110000):
        category = unicodedata.category(chr(cp))
        if category != previous:
            edges += [chr(cp - 1), chr(cp)] if cp else [chr(cp)]
            previous = category
    return (*edges, chr(0x10FFFF))


def test_the_category_list_is_unicodes() -> None:
    assert {unicodedata.category(ch) for ch in category_edges()} == patterns._CATEGORIES


@pytest.mark.parametrize("pattern", [TAG_KEY, r"[\p{Lu}\p{Nd}]+", r"\P{L}", r"^[^\p{L}\s]$",
                                     r"^(\p{Z})+$", r"[\p{So}\w]"])
def test_one_class_searches_agree_with_spelled_out_classes(pattern: str) -> None:
    fast, spelled_out = compile_ecma_pattern(pattern), patterns._spelled_out(pattern)
    assert fast is not None and fast is not always_found
    wrong = [ch for ch in category_edges() if bool(fast(ch)) != bool(spelled_out(ch))]
    assert not wrong, [f"U+{ord(ch):04X}" for ch in wrong[:10]]


@functools.cache
def model(service: str) -> botocore.model.ServiceModel:
    loader = botocore.loaders.create_loader()
    return botocore.model.ServiceModel(loader.load_service_model(service, "service-2"), service)


def test_validators_of_every_operation_compile_without_unicode_tables(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Spelling out \p classes scans all of Unicode (~0.3 s): never at start-up.
    def scan() -> dict[str, str]:
        raise AssertionError("Unicode tables built")

    monkeypatch.setattr(patterns, "_category_runs", scan)
    compile_ecma_pattern.cache_clear()
    patterns._spelled_out.cache_clear()
    try:
        for service in SERVICES:
            for op in model(service).operation_names:
                shape = model(service).operation_model(op).input_shape
                compile_input_validator(shape, ValidationOptions())
        assert search(TAG_KEY, "環境") and not search(TAG_KEY, "!")
        lazy = compile_ecma_pattern(r"a\p{Lu}b")  # other shapes: tables at the first search
        assert lazy is not None
        with pytest.raises(AssertionError, match="Unicode tables built"):
            lazy("aÉb")
    finally:
        compile_ecma_pattern.cache_clear()  # nothing compiled under the patch stays cached
        patterns._spelled_out.cache_clear()


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(exclude_categories=("Cn", "Cs")), max_size=6))
def test_unicode_classes_agree_with_a_real_unicode_regex_engine(text: str) -> None:
    import regex  # the test extra's oracle; not a dependency of the proxy
    for pattern in (TAG_KEY, r"[\p{Lu}\p{Nd}]+", r"\P{L}", r"\p{Letter}*", r"a?\p{Lu}[\p{Nd}x]+"):
        assert search(pattern, text) == bool(regex.search(pattern, text)), (pattern, text)
        # Anchored: ECMA's $ is the very end, so compare with the oracle's fullmatch.
        assert search(f"^{pattern}$", text) == bool(regex.fullmatch(pattern, text)), (pattern, text)
