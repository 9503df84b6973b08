"""docs/configuration.md, generated from config/reference.yaml: one source for every key.

reference.yaml is the file an operator copies; its comments are the documentation. This
script turns it into the site's configuration page: one section per top-level key, each
comment block with the keys it introduces and their defaults, commented examples as YAML.

    python scripts/config_reference.py           # rewrite docs/configuration.md
    python scripts/config_reference.py --check   # exit 1 if it is not current (make test does this)

How the file is read: a `# ...` block is prose for the keys that follow it; `#  ...` lines
(two spaces or more) right after a key are an example of that key; a `# --- ... ---` line
opens a part of the file; keys are nested by two-space indentation.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "config" / "reference.yaml"
PAGE = REPO / "docs" / "configuration.md"

KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[a-z0-9_]+):(?: (?P<value>.*))?$")
COMMENT_LINE = re.compile(r"^(?P<indent> *)#(?P<text>.*)$")
PART_LINE = re.compile(r"^# -{3} (?P<title>.+?) -+$")


@dataclass
class Key:
    path: str
    default: str | None  # None: a section (its keys follow)
    examples: list[str] = field(default_factory=list)


@dataclass
class Block:
    """A comment block and the keys it introduces, up to the next block."""

    prose: list[str] = field(default_factory=list)
    keys: list[Key] = field(default_factory=list)


@dataclass
class Section:
    name: str
    part: str | None  # the `# --- ... ---` part of the file it sits in
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Reference:
    intro: list[str]
    sections: list[Section]

    def all_keys(self) -> list[Key]:
        return [key for section in self.sections for block in section.blocks for key in block.keys]


def parse(text: str) -> Reference:
    intro: list[str] = []
    sections: list[Section] = []
    part: str | None = None
    pending: list[str] = []  # prose waiting for its first key
    parents: list[str] = []
    last_key: Key | None = None  # the key an example line belongs to
    for line in text.splitlines():
        if not line.strip():
            if not sections and pending:
                intro, pending = pending, []
            last_key = None
            continue
        if heading := PART_LINE.match(line):
            part, pending = heading["title"], []
            continue
        if comment := COMMENT_LINE.match(line):
            body = comment["text"]
            if last_key is not None and body.startswith("  "):
                last_key.examples.append(body[2:])
            else:
                pending.append(body.removeprefix(" "))
                last_key = None
            continue
        match = KEY_LINE.match(line)
        if match is None:
            raise ValueError(f"config/reference.yaml: cannot read this line: {line!r}")
        depth = len(match["indent"]) // 2
        parents = [*parents[:depth], match["key"]]
        if depth == 0:
            sections.append(Section(match["key"], part))
        section = sections[-1]
        if pending or not section.blocks:
            section.blocks.append(Block(prose=pending))
            pending = []
        last_key = Key(".".join(parents), match["value"])
        if last_key.default is not None or depth == 0:
            section.blocks[-1].keys.append(last_key)
    return Reference(intro, sections)


CODE_SPAN = re.compile(r"(`[^`]*`)")
DOC_PAGE = re.compile(r"\bdocs/([\w-]+\.md(?:#[\w-]+)?)")


def escape(text: str) -> str:
    """Prose as Markdown text: `<SAN URI>` is no HTML tag and `ivs:Get*, ivschat:*` no emphasis;
    a page named as `docs/resilience.md#retries` becomes a link (the strict build checks it)."""
    parts = CODE_SPAN.split(text)
    return "".join(part if i % 2 else markdown_text(part) for i, part in enumerate(parts))


def markdown_text(text: str) -> str:
    text = text.replace("<", "&lt;").replace("*", "\\*")
    return DOC_PAGE.sub(lambda page: f"[{page[0]}]({page[1]})", text)


def prose_markdown(lines: list[str]) -> list[str]:
    """Comment lines as Markdown: text joined into one paragraph, indented lines (a command
    to run) as a code block."""
    out: list[str] = []
    paragraph: list[str] = []
    code: list[str] = []
    for line in [*lines, ""]:
        if line.startswith("  ") and line.strip():
            if paragraph:
                out += [escape(" ".join(paragraph)), ""]
                paragraph = []
            code.append(line.strip())
            continue
        if code:
            out += ["```", *code, "```", ""]
            code = []
        if line.strip():
            paragraph.append(line.strip())
    if paragraph:
        out += [escape(" ".join(paragraph)), ""]
    return out


def render(reference: Reference) -> str:
    out = [
        "# Configuration",
        "",
        "<!-- Generated from config/reference.yaml by scripts/config_reference.py: edit those, not this page. -->",
        "",
        *prose_markdown(reference.intro[1:]),  # the first line is the title's
        "Every key below is in `config/reference.yaml` with its default; that file loads as the",
        "defaults (`tests/unit/test_config.py`), and `tests/unit/test_docs.py` checks that it names",
        "every key the loader accepts and nothing else.",
        "",
    ]
    part = None
    for section in reference.sections:
        if section.part != part:
            part = section.part
            title, _, aside = part.partition(" (")  # "Shared gateway (the reference: docs/gateway.md)"
            out += [f"## {title}", ""] + ([escape(aside.rstrip(")").capitalize()) + ".", ""] if aside else [])
        level = "###" if part else "##"
        out += [f"{level} `{section.name}`", ""]
        for block in section.blocks:
            leaves = [key for key in block.keys if key.default is not None]
            if leaves:
                out += [" · ".join(f"`{key.path}: {key.default}`" for key in leaves), ""]
            out += prose_markdown(block.prose)
            for key in leaves:
                if key.examples:
                    out += [f"For example, `{key.path}`:", "", "```yaml", *key.examples, "```", ""]
    return "\n".join(out).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/configuration.md is not current")
    args = parser.parse_args(argv)
    page = render(parse(REFERENCE.read_text(encoding="utf-8")))
    if args.check:
        if PAGE.read_text(encoding="utf-8") != page:
            print("docs/configuration.md is not current: run python scripts/config_reference.py", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(page, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
