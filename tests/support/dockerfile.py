"""A small Dockerfile reader: stages, instructions, heredocs, exec-form arguments.

Enough for the Dockerfile of this repository (which hadolint checks for the rest), so that
the tests can compare it with the code and replay its install steps without a Docker engine.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

HEREDOC = re.compile(r"<<-?[\"']?(\w+)[\"']?")


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY, ...
    args: str  # everything after the keyword, continuation lines joined
    heredoc: str | None = None  # the body of a `<<EOF` document, if any

    def exec_form(self) -> list[str]:
        """The JSON array of CMD/ENTRYPOINT (or what follows `CMD` in HEALTHCHECK)."""
        text = self.args
        if self.keyword == "HEALTHCHECK":
            text = text[text.index("CMD") + 3 :]
        value = json.loads(text)
        assert isinstance(value, list) and all(isinstance(v, str) for v in value), self
        return value

    def flags(self) -> dict[str, str]:
        """`--name=value` options at the start of the arguments (COPY --chmod, RUN --mount)."""
        found = {}
        for word in shlex.split(self.args):
            if not word.startswith("--"):
                break
            name, _, value = word[2:].partition("=")
            found[name] = value
        return found

    def words(self) -> list[str]:
        """The arguments without the leading flags and the heredoc marker."""
        words = shlex.split(HEREDOC.sub("", self.args))
        while words and words[0].startswith("--"):
            words.pop(0)
        return words


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def one(self, keyword: str) -> Instruction:
        (found,) = self.all(keyword)
        return found

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for instruction in self.all("ENV"):
            for word in shlex.split(instruction.args):
                name, _, value = word.partition("=")
                values[name] = value
        return values


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: list[Stage]

    @classmethod
    def read(cls, path: Path) -> Dockerfile:
        global_args: dict[str, str] = {}
        stages: list[Stage] = []
        for instruction in _instructions(path.read_text()):
            if instruction.keyword == "FROM":
                words = instruction.args.split()
                name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
                stages.append(Stage(words[0], name))
            elif not stages:
                assert instruction.keyword == "ARG", f"only ARG may precede FROM: {instruction}"
                name, _, value = instruction.args.partition("=")
                global_args[name.strip()] = value.strip()
            else:
                stages[-1].instructions.append(instruction)
        return cls(global_args, stages)

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def stage(self, name: str) -> Stage:
        (found,) = [s for s in self.stages if s.name == name]
        return found

    def stage_args(self, stage: Stage) -> dict[str, str]:
        values = dict(self.global_args)
        for instruction in stage.all("ARG"):
            name, _, value = instruction.args.partition("=")
            values[name.strip()] = value.strip()
        return values

    def expand(self, text: str, stage: Stage) -> str:
        values = self.stage_args(stage)
        return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values.get(m[1] or m[2], m[0]), text)


def _instructions(text: str) -> list[Instruction]:
    lines = text.splitlines()
    found: list[Instruction] = []
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        if not line or line.startswith("#"):
            continue
        while line.endswith("\\") and i < len(lines):
            line = line[:-1].rstrip() + " "
            while i < len(lines) and lines[i].strip().startswith("#"):
                i += 1  # comment lines inside a continued instruction
            line += lines[i].strip()
            i += 1
        keyword, _, args = line.partition(" ")
        heredoc = None
        marker = HEREDOC.search(args)
        if marker:
            body = []
            while lines[i].strip() != marker[1]:
                body.append(lines[i])
                i += 1
            i += 1
            heredoc = "\n".join(body) + "\n"
        found.append(Instruction(keyword.upper(), args.strip(), heredoc))
    return found
