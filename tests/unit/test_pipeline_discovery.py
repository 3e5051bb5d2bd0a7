"""Pipeline discovery that one bad module cannot take down (issue 14, finding 7): any exception at import, SystemExit
included, marks that module broken while the others load; KeyboardInterrupt still interrupts; a run of one pipeline
(a cron run) imports only the modules it needs, as far as the files tell without running them."""

from __future__ import annotations

import textwrap

import pytest

from ops.pipelines.definition import declared, load_pipelines

GOOD = '''
from ops.pipelines.definition import pipeline

@pipeline(name="{name}", target="t", depends_on={depends})
def build(run):
    pass
'''


def folder(tmp_path, **modules):
    d = tmp_path / "pipelines"
    d.mkdir(exist_ok=True)
    for stem, text in modules.items():
        (d / f"{stem}.py").write_text(textwrap.dedent(text))
    return d


def good(name, depends=()):
    return GOOD.format(name=name, depends=list(depends))


def marked(tmp_path, name, depends=()):
    """A module that leaves a mark when it is imported."""
    return good(name, depends) + f"\nopen({str(tmp_path / ('imported-' + name))!r}, 'w').close()\n"


@pytest.mark.parametrize("text, error", [
    ("import sys\nsys.exit(3)\n", "exits.py (line 2): calls sys.exit(3) when imported"),
    ("raise SystemExit\n", "exits.py (line 1): calls sys.exit(None) when imported"),
    ("import os\nos.fspath(1)\n", "exits.py (line 2): TypeError: expected str, bytes or os.PathLike object, not int"),
    ("class Boom(BaseException):\n    pass\nraise Boom('odd')\n", "exits.py (line 3): Boom: odd"),
    ("x = (\n", "exits.py"),
], ids=["sys.exit", "SystemExit", "exception", "base-exception", "syntax"])
def test_any_exception_at_import_marks_only_that_module_broken(tmp_path, text, error):
    d = folder(tmp_path, a=good("a"), exits=text, z=good("z", ["a"]))
    registry = load_pipelines(directory=d)
    assert registry.names() == ["a", "z"]
    [(module, message)] = registry.errors.items()
    assert module.endswith(".exits") and message.startswith(error), message


def test_keyboard_interrupt_at_import_still_interrupts(tmp_path):
    d = folder(tmp_path, a=good("a"), stop="raise KeyboardInterrupt\n")
    with pytest.raises(KeyboardInterrupt):
        load_pipelines(directory=d)


def test_a_broken_module_leaves_nothing_in_sys_modules(tmp_path):
    import sys

    d = folder(tmp_path, exits="import sys\nsys.exit(3)\n")
    registry = load_pipelines(directory=d)
    [module] = registry.errors
    assert module not in sys.modules


def test_declared_reads_names_and_upstreams_without_running_the_module(tmp_path):
    d = folder(tmp_path, a=good("a") + "\nraise SystemExit(1)\n", b=good("b", ["a"]),
               factory='''
                   from ops.pipelines.definition import pipeline
                   for n in ("x", "y"):
                       pipeline(name=n, target="t")(lambda run: None)
                   ''',
               helper="VALUE = 1\n", broken="def (:\n")
    assert declared(d / "a.py") == {"a": ()}
    assert declared(d / "b.py") == {"b": ("a",)}
    assert declared(d / "factory.py") is None  # names made at run time: it cannot tell
    assert declared(d / "helper.py") is None  # declares nothing it can see: imported to be sure
    assert declared(d / "broken.py") is None


def test_a_run_of_one_pipeline_imports_its_module_and_its_upstream_ones_only(tmp_path):
    d = folder(tmp_path, a=marked(tmp_path, "a"), b=marked(tmp_path, "b", ["a"]), c=marked(tmp_path, "c", ["b"]),
               other=marked(tmp_path, "other"), exits="import sys\nsys.exit(3)\n" + good("gone"))
    registry = load_pipelines(directory=d, only=["b"])
    assert registry.names() == ["a", "b"] and registry.errors == {} and registry.selected == ("b",)
    assert sorted(p.name for p in tmp_path.glob("imported-*")) == ["imported-a", "imported-b"]
    assert set(registry.declared) == {"a", "b", "c", "other", "gone"}  # every name is still known


def test_a_module_the_text_cannot_tell_about_is_imported_too(tmp_path):
    d = folder(tmp_path, a=marked(tmp_path, "a"),
               factory=f'''
                   from ops.pipelines.definition import pipeline
                   open({str(tmp_path / "imported-factory")!r}, "w").close()
                   for n in ("x",):
                       pipeline(name=n, target="t")(lambda run: None)
                   ''', other=marked(tmp_path, "other"))
    registry = load_pipelines(directory=d, only=["a"])
    assert registry.names() == ["a", "x"]
    assert sorted(p.name for p in tmp_path.glob("imported-*")) == ["imported-a", "imported-factory"]


def test_a_name_no_file_declares_imports_everything_for_the_right_error(tmp_path):
    d = folder(tmp_path, a=marked(tmp_path, "a"), other=marked(tmp_path, "other"))
    registry = load_pipelines(directory=d, only=["nope"])
    assert registry.names() == ["a", "other"]
    with pytest.raises(Exception, match="unknown pipeline 'nope'"):
        registry.get("nope")


def test_known_names_include_those_of_broken_modules(tmp_path):
    d = folder(tmp_path, a=good("a"), exits="import sys\nsys.exit(3)\n" + good("quitter"), odd="x = (\n")
    registry = load_pipelines(directory=d)
    assert registry.known() == {"a", "quitter", "exits", "odd"}
    with pytest.raises(Exception, match="pipeline 'quitter' did not load: exits.py"):
        registry.get("quitter")
