"""The README's "Writing a pipeline" section, generated from the code: the contract (the ``pipeline`` decorator's
docstring), its options (the fields of ``Pipeline`` and the comment beside each), every check (each ``checks.*``
method's docstring, its example, and the failure message its example gives) and what ``build(run)`` gets (``Run``'s
public methods). A test compares the README with :func:`section`, so the reference cannot drift from the code;
after changing a docstring: ``python -m ops.dev.pipeline_docs --write``.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import re
import sys
import textwrap
import tokenize
from pathlib import Path

from ops import ROOT
from ops.core.errors import BadInput
from ops.pipelines import definition, runner

BEGIN = "<!-- generated from the code by: python -m ops.dev.pipeline_docs --write (edit the docstrings, not this) -->"
END = "<!-- end of the generated section -->"
HEADING = "## Writing a pipeline"
RUN_INTERNAL = {"pipeline", "extra"}  # the definition itself and the runner's own cache
INTERNAL_FIELDS = {"build", "module"}  # set by the decorator and the loader, not options
EXAMPLE = re.compile(r"^\s*Example: ``(.+?)``\s*$", re.M)
FOUND = 16  # what the examples' failures measured (e.g. "16 rows, expected at least 100")


def _doc(obj) -> str:
    return markdown(inspect.cleandoc(obj.__doc__ or ""))


def markdown(text: str) -> str:
    """A docstring's reStructuredText as Markdown: ``x`` and :role:`x` as `x`, a ``::`` block as a Python block."""
    text = re.sub(r":\w+:`([^`]+)`", r"`\1`", text).replace("``", "`")

    def block(match: re.Match) -> str:
        code = textwrap.dedent(match.group(2)).strip()
        language = "sql" if re.match(r"(CREATE|SELECT|INSERT|ALTER)\b", code) else "python"
        return f"{match.group(1)}:\n\n```{language}\n{code}\n```\n\n"

    return re.sub(r"([^\n]*?)::\n\n((?:(?:    [^\n]*)?\n)+)", block, text + "\n").rstrip()


def _call(name: str, function) -> str:
    """``checks.name(a, b="x")``: the call's parameters, without annotations."""
    shown = []
    for p in inspect.signature(function).parameters.values():
        star = {p.VAR_POSITIONAL: "*", p.VAR_KEYWORD: "**"}.get(p.kind, "")
        default = "" if p.default is p.empty else "=" + (f'"{p.default}"' if isinstance(p.default, str) else
                                                          repr(p.default))
        shown.append(f"{star}{p.name}{default}")
    return f"{name}({', '.join(shown)})"


def field_docs(cls) -> list[dict[str, str]]:
    """Each field of dataclass ``cls`` in order: name, type, default (source text, '' when required) and its doc:
    the comment on its line, after the comment lines right above it. ``BadInput`` for a field with no comment."""
    source = textwrap.dedent(inspect.getsource(cls))
    comments: dict[int, str] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = token.string.lstrip("#").strip()
    lines = source.splitlines()
    out = []
    for node in ast.parse(source).body[0].body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        name = node.target.id
        if name in INTERNAL_FIELDS:
            continue
        above, n = [], node.lineno - 1
        while n >= 1 and lines[n - 1].strip().startswith("#"):
            above.insert(0, comments[n])
            n -= 1
        doc = " ".join(above + [comments[node.end_lineno]] if node.end_lineno in comments else above)
        if not doc:
            raise BadInput(f"option {name} of {cls.__name__} has no comment saying what it does",
                           hint=f"add one beside it in {Path(inspect.getsourcefile(cls)).relative_to(ROOT)}")
        default = ast.unparse(node.value) if node.value is not None else ""
        out.append({"name": name, "type": ast.unparse(node.annotation), "default": default, "doc": doc})
    return out


def check_docs() -> list[dict[str, str]]:
    """Each check of ``checks``: its call signature, docstring (without its example line), example and the failure
    message the example gives. ``BadInput`` for a check without a docstring or an example."""
    out = []
    for name, member in vars(definition.checks).items():
        if name.startswith("_") or not isinstance(member, staticmethod):
            continue
        function = member.__func__
        doc = inspect.cleandoc(function.__doc__ or "")
        example = EXAMPLE.search(doc)
        if not doc or not example:
            raise BadInput(f"checks.{name} needs a docstring with an example line (Example: ``checks.{name}(...)``)",
                           hint="add it in ops/pipelines/definition.py")
        check = eval(example.group(1), {"checks": definition.checks})  # our own docstring's example
        out.append({"name": name, "signature": _call(f"checks.{name}", function),
                    "doc": markdown(EXAMPLE.sub("", doc).strip()), "example": example.group(1),
                    "fails": check.explain(3, FOUND)})
    return out


def run_docs() -> list[tuple[str, str]]:
    """``Run``'s fields (with their types), then its public properties and methods with the first paragraph of
    their docstrings."""
    out = [(f"run.{f.name}", f"`{f.type}`") for f in dataclasses.fields(runner.Run) if f.name not in RUN_INTERNAL]
    for name, member in vars(runner.Run).items():
        if name.startswith("_") or not (callable(member) or isinstance(member, property)):
            continue
        if isinstance(member, property):
            out.append((f"run.{name}", _doc(member.fget).split("\n\n")[0].replace("\n", " ")))
            continue
        call = _call(f"run.{name}", member).replace("(self, ", "(").replace("(self)", "()")
        out.append((call, _doc(member).split("\n\n")[0].replace("\n", " ")))
    return out


def section() -> str:
    """The whole generated section, heading to end marker."""
    contract = _doc(definition.pipeline).split("\n\n", 1)[1]  # after its one-line summary
    parts = [HEADING, "", BEGIN, "", contract, "", "### Options of `@pipeline`", "",
             "| option | default | what it does |", "|---|---|---|"]
    for f in field_docs(definition.Pipeline):
        default = f"`{f['default']}`" if f["default"] else "required"
        parts.append(f"| `{f['name']}` | {default} | {markdown(f['doc']).replace('|', '/')} |")
    parts += ["", "### Checks", "", _doc(definition.checks), ""]
    for c in check_docs():
        parts += [f"**`{c['signature']}`**: {c['doc']}", "", "```python", f"checks=[{c['example']}]", "```", "",
                  f"A failure says: \"{c['fails']}\".", ""]
    parts += ["### What `build(run)` gets", "", _doc(runner.Run), ""]
    parts += [f"- `{name}`" + (f": {doc}" if doc else "") for name, doc in run_docs()]
    return "\n".join(parts + ["", END])


def readme_section(readme: str) -> str | None:
    """The section as the README has it now, or None when it has none."""
    start = readme.find(HEADING + "\n")
    end = readme.find(END, start)
    return readme[start:end + len(END)] if start >= 0 and end >= 0 else None


def write(path: Path = ROOT / "README.md") -> bool:
    """Put the generated section into the README (replacing the old one, or before "## Backfill"); whether it
    changed."""
    readme = path.read_text()
    new = section()
    old = readme_section(readme)
    if old is not None:
        updated = readme.replace(old, new)
    else:
        at = readme.index("\n## Backfill\n")
        updated = readme[:at] + "\n" + new + "\n" + readme[at:]
    if updated != readme:
        path.write_text(updated)
    return updated != readme


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        print("README.md: " + ("updated" if write() else "already up to date"))
    else:
        print(section())
