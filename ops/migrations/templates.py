"""Template variables in migrations: ``[migrations.variables]`` (``CHOPS_MIGRATIONS__VARIABLES__<NAME>``) filled in
when a statement is rendered, in the two spellings real migration sets use.

* **Go templates**, as golang-migrate sets rendered with ``text/template`` write them: ``{{.NAME}}``,
  ``{{ .NAME }}`` and ``{{NAME}}``. Like ``text/template``, which knows nothing of SQL, they are filled everywhere
  outside comments: inside strings (``ReplicatedMergeTree('/clickhouse/{{.APP_CLUSTER}}/…')`` is the common case)
  and glued to a word (``{{.APP_REPLICATED}}MergeTree``). Other template actions (``{{if .X}}``, ``{{.X | f}}``,
  ``{{- .X -}}``) are reported, never run; ``{{`` followed by anything else (``format('{{}}')``) is left alone.
* **goose ENVSUB**: on the lines between ``-- +goose ENVSUB ON`` and ``-- +goose ENVSUB OFF``, and only there, goose
  expands shell-style references line by line (its parser calls ``mfridman/interpolate`` on each line), and so does
  chops, with the same grammar: ``${NAME}`` and ``$NAME``; ``${NAME:-default}`` (unset or empty),
  ``${NAME-default}`` (unset), ``${NAME?message}`` (an error when unset), ``${NAME:offset[:length]}`` (a
  substring); defaults nest (``${A:-${B}}``); ``\\$`` and ``$$`` are a literal ``$``, ``$(`` and a final ``$`` stay
  as written, and a ``$`` before anything else is an error, as in goose. The marker lines stay in chops' files
  (``ops.migrations.sqlsplit.envsub_lines`` finds the lines between them), so imported files keep goose's spelling.

``{{.CLUSTER}}`` in any spelling is never a variable: it is chops' cluster placeholder, which
``ops.migrations.sqlsplit.render`` fills (or removes with its ``ON CLUSTER``) after this.

Two deliberate differences from the tools. **Comments are left alone**: a placeholder in a comment is neither filled
nor checked, so a commented-out statement naming a variable nobody sets any more does not stop a deploy (the tools
fill comments too, but a comment reaches the engine as a comment either way). **An unknown variable is an error**
naming the line and the variable, where goose expands an unset ``${NAME}`` to nothing (a table named ``_events``)
and ``text/template`` prints ``<no value>``. Variable names are case-insensitive: settings keep them upper-case, as
the environment spells them. A value is inserted as it is, never scanned again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Collection, Mapping

from ops.core.errors import BadInput
from ops.migrations.sqlsplit import COMMENT, _scan, envsub_lines

# `{{ … }}` on one line; what is inside decides whether it is a variable, another template action, or not a template.
_GO_TEMPLATE = re.compile(r"\{\{(?P<body>.*?)\}\}")
_GO_VARIABLE = re.compile(r"\s*\.?(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*")
_GO_ACTION = re.compile(r"-?\s*[.$A-Za-z_]")  # what text/template would read as an action
# text/template's keywords: `{{end}}` is an action, never a variable named end.
_GO_KEYWORDS = frozenset({"if", "else", "end", "range", "with", "define", "template", "block", "break", "continue",
                          "nil", "true", "false"})
CLUSTER = "CLUSTER"  # chops' cluster placeholder, {{.CLUSTER}}: never a variable

HINT = "set it in [migrations.variables] (config/<env>.toml) or as CHOPS_MIGRATIONS__VARIABLES__{name}"


@dataclass(frozen=True)
class Use:
    """One use of a variable: its name (upper-case), the line, and the default it has (None: none)."""

    name: str
    line: int
    default: str | None = None

    @property
    def required(self) -> bool:
        return self.default is None


def value_text(value: Any) -> str:
    """A variable's value as it goes into SQL: TOML booleans as Go prints them (``true``), the rest as written."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def render_variables(text: str, variables: Mapping[str, Any], *, first_line: int = 1,
                     envsub: Collection[int] = ()) -> str:
    """``text`` (a statement, or a whole file) with its variables filled in. ``first_line`` is the line of the file
    ``text`` starts on and ``envsub`` the lines of the file in goose ENVSUB blocks (``Statement.line`` and
    ``Statement.envsub``). An unknown variable or a template chops cannot fill is a ``BadInput`` naming the line."""
    if "{{" not in text and not envsub:
        return text  # most statements: not even a scan
    renderer = _Renderer(variables)
    rendered = renderer.run(text, first_line, envsub)
    if renderer.problems:
        line, message = renderer.problems[0]
        more = len(renderer.problems) - 1
        raise BadInput(f"line {line}: {message}" + (f" (and {more} more: run inv db.validate)" if more else ""),
                       hint=renderer.hint or "run inv db.validate for every finding")
    return rendered


def template_problems(text: str, variables: Mapping[str, Any]) -> list[tuple[int, str]]:
    """Every ``(line, message)`` of a migration file's text that rendering would refuse: unknown variables (file,
    line and variable are what ``db.validate`` shows), template actions chops does not run, malformed ``${…}``."""
    if "{{" not in text and "$" not in text:
        return []
    renderer = _Renderer(variables)
    renderer.run(text, 1, envsub_lines(text))
    return sorted(set(renderer.problems))


def template_variables(text: str) -> list[Use]:
    """Every variable a migration file's text uses (outside comments), in order: what ``db.import`` lists."""
    if "{{" not in text and "$" not in text:
        return []
    renderer = _Renderer(None)
    renderer.run(text, 1, envsub_lines(text))
    return renderer.uses


class _Renderer:
    """One pass over a text: fills variables (``variables``), or with ``variables=None`` only records their uses.
    Problems are collected, never raised, so one pass finds them all."""

    def __init__(self, variables: Mapping[str, Any] | None):
        self.collect = variables is None
        self.values = {} if variables is None else {str(k).upper(): value_text(v) for k, v in variables.items()}
        self.problems: list[tuple[int, str]] = []
        self.uses: list[Use] = []
        self.hint: str | None = None
        self.line = 0

    def run(self, text: str, first_line: int, envsub: Collection[int]) -> str:
        """``text`` rendered; comments are copied as they are."""
        parts, line = [], first_line
        for is_comment, begin, end in _segments(text):
            piece = text[begin:end]
            if is_comment:
                parts.append(piece)
            else:
                rendered = []
                for offset, chunk in enumerate(piece.split("\n")):
                    self.line = line + offset
                    rendered.append(self._line(chunk, self.line in envsub))
                parts.append("\n".join(rendered))
            line += piece.count("\n")
        return "".join(parts)

    # --- one line -----------------------------------------------------------------------------------------------

    def _line(self, text: str, envsub: bool) -> str:
        if "{{" not in text and not (envsub and ("$" in text or "\\" in text)):
            return text
        if not envsub:
            return _GO_TEMPLATE.sub(self._go, text)
        parts, done = [], 0
        for match in _GO_TEMPLATE.finditer(text):  # Go templates are filled on ENVSUB lines too
            parts += [self._envsub(text[done:match.start()]), self._go(match)]
            done = match.end()
        return "".join(parts + [self._envsub(text[done:])])

    def _envsub(self, text: str) -> str:
        if "$" not in text and "\\" not in text:
            return text
        expression, _ = _Parser(text, self).expression(0, stop="")
        return self._evaluate(expression)

    def _go(self, match: re.Match) -> str:
        """One ``{{ … }}``: a variable filled; the cluster placeholder and non-templates kept; the rest reported."""
        body = match["body"]
        variable = _GO_VARIABLE.fullmatch(body)
        if variable and not (variable["name"] in _GO_KEYWORDS and "." not in body):
            name = variable["name"]
            if name.upper() == CLUSTER:
                return match.group()
            return self._value(name, match.group())
        if _GO_ACTION.match(body.lstrip()):
            self._problem(f"template {match.group()} is not supported: chops fills only {{{{.NAME}}}}, "
                          "{{ .NAME }} and {{NAME}}")
        return match.group()

    def _value(self, name: str, written: str, default: str | None = None) -> str:
        """The value of ``name``; when unknown, a problem (and the text as written, for the report)."""
        if self.collect:
            self.uses.append(Use(name.upper(), self.line, default))
            return written
        value = self.values.get(name.upper())
        if value is None:
            self._problem(f"unknown variable {name} in {written}", hint=HINT.format(name=name.upper()))
            return written
        return value

    def _problem(self, message: str, hint: str | None = None) -> None:
        self.problems.append((self.line, message))
        self.hint = self.hint or hint

    # --- goose ENVSUB: evaluating what _Parser read -------------------------------------------------------------

    def _evaluate(self, expression: list) -> str:
        return "".join(item if isinstance(item, str) else self._expand(item) for item in expression)

    def _expand(self, e: "_Expansion") -> str:
        if self.collect:
            self._collect(e, optional=False)
            return e.written
        value = self.values.get(e.name.upper())
        if e.op == ":-" and not value or e.op == "-" and value is None:
            return self._evaluate(e.content)
        if value is None:
            if e.op == "?":
                self._problem(f"variable {e.name} is not set: {self._evaluate(e.content) or 'not set'} "
                              f"(in {e.written})", hint=HINT.format(name=e.name.upper()))
                return e.written
            return self._value(e.name, e.written)
        return value if e.op != ":" else _substring(value, e.offset, e.length)


    def _collect(self, e: "_Expansion", optional: bool) -> None:
        """Record ``e``'s variable, and those of its default (needed only when the default is used)."""
        has_default = e.op in (":-", "-")
        default = "".join(i if isinstance(i, str) else i.written for i in e.content) if has_default else None
        self.uses.append(Use(e.name.upper(), self.line, "" if optional and default is None else default))
        for item in e.content:
            if not isinstance(item, str):
                self._collect(item, optional=optional or has_default)


@dataclass
class _Expansion:
    """``$NAME`` or ``${NAME<op><content>}``; ``op`` is ``""``, ``":-"``, ``"-"``, ``"?"`` or ``":"`` (substring)."""

    name: str
    op: str
    content: list  # text and nested expansions: the default, or the message of ``?``
    written: str
    offset: int = 0
    length: int | None = None


class _Parser:
    """goose's ENVSUB grammar on one line (``mfridman/interpolate``'s recursive descent, rule for rule)."""

    def __init__(self, text: str, renderer: _Renderer):
        self.text, self.renderer = text, renderer

    def expression(self, pos: int, stop: str) -> tuple[list, int]:
        """Text and expansions from ``pos`` up to ``stop`` (``}`` inside a brace) or the end of the line."""
        items: list = []
        text = self.text
        while pos < len(text) and text[pos] not in stop:
            two = text[pos:pos + 2]
            if two == "\\\\":
                items.append("\\\\")
                pos += 2
            elif two in ("\\$", "$$"):
                items.append("$")
                pos += 2
            elif two == "$(":
                items.append("$(")
                pos += 2
            elif text[pos] == "$" and pos < len(text) - 1:
                expansion, pos = self.expansion(pos)
                items.append(expansion)
            else:
                end = pos + 1
                while end < len(text) and text[end] not in "$\\" and text[end] not in stop:
                    end += 1
                items.append(text[pos:end])
                pos = end
        return items, pos

    def expansion(self, start: int) -> tuple[object, int]:
        """The expansion at ``start`` (a ``$``); a malformed one is a problem and stays as written."""
        try:
            if self.text.startswith("${", start):
                return self._brace(start)
            name, pos = self._identifier(start + 1)
            return _Expansion(name, "", [], self.text[start:pos]), pos
        except ValueError as exc:
            shown = self.text[start:].split()[0]
            shown = shown if len(shown) <= 24 else shown[:24] + "…"
            self.renderer._problem(f"goose cannot expand {shown}: {exc} (write \\$ or $$ for a literal $)")
            return self.text[start], start + 1

    def _brace(self, start: int) -> tuple[_Expansion, int]:
        name, pos = self._identifier(start + 2)
        text = self.text
        if text.startswith("}", pos):
            return _Expansion(name, "", [], text[start:pos + 1]), pos + 1
        op = ":-" if text.startswith(":-", pos) else text[pos:pos + 1]
        if op not in (":-", "-", "?", ":"):
            raise ValueError(f"expected }}, :-, -, ? or : after {name}")
        pos += len(op)
        expansion = _Expansion(name, op, [], "")
        if op == ":":
            pos = self._substring(expansion, pos)
        else:
            expansion.content, pos = self.expression(pos, stop="}")
        if not text.startswith("}", pos):
            raise ValueError("no closing }")
        expansion.written = text[start:pos + 1]
        return expansion, pos + 1

    def _substring(self, expansion: _Expansion, pos: int) -> int:
        match = re.compile(r"([^:}]*)(?::([^}]*))?").match(self.text, pos)
        try:
            expansion.offset = int(match[1].strip())
            expansion.length = None if match[2] is None else int(match[2].strip())
        except ValueError:
            raise ValueError("a substring needs whole numbers (${NAME:offset:length})") from None
        return match.end()

    def _identifier(self, pos: int) -> tuple[str, int]:
        text = self.text
        if pos >= len(text) or not text[pos].isalpha():
            raise ValueError("a name must start with a letter")
        end = pos + 1
        while end < len(text) and (text[end].isalnum() or text[end] == "_"):
            end += 1
        return text[pos:end], end


def _substring(value: str, offset: int, length: int | None) -> str:
    """``${NAME:offset:length}`` as interpolate computes it (negative offset: from the end; negative length: up to
    that many characters from the end)."""
    start = min(max(offset + len(value) if offset < 0 else offset, 0), len(value))
    if length is None:
        return value[start:]
    end = start + length if length >= 0 else max(length + len(value), start)
    return value[start:min(end, len(value))]


def _segments(text: str):
    """``(is_comment, start, end)`` covering ``text``: comments, and the stretches between them (code, strings,
    quoted identifiers and heredocs together, so a ``${A:-'x'}`` that spans a string stays one piece)."""
    start = 0
    for kind, begin, end in _scan(text):
        if kind == COMMENT:
            if start < begin:
                yield False, start, begin
            yield True, begin, end
            start = end
    if start < len(text):
        yield False, start, len(text)
