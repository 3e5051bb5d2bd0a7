"""Meta-tests of the command surface: help everywhere, make help complete, the README true, imports lazy."""

import inspect
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT

MAKEFILE = (ROOT / "Makefile").read_text()
README = (ROOT / "README.md").read_text()


def all_tasks():
    import tasks

    ns = tasks.ns
    return {name: ns[name] for name in ns.task_names}


def test_every_task_has_a_docstring_and_help_for_every_flag():
    for name, task in all_tasks().items():
        assert (task.__doc__ or "").strip(), f"task {name} has no docstring"
        params = [p for p in inspect.signature(task.body).parameters][1:]
        missing = [p for p in params if p not in task.help]
        assert not missing, f"task {name}: no help for {missing}"


def test_no_task_takes_a_number_default():
    # invoke converts a flag to its default's type before chops sees it, so `--days x` would be a traceback;
    # number flags default to text and are converted by ops.cli.base.whole_number (one line, exit 2).
    for name, task in all_tasks().items():
        for param in list(inspect.signature(task.body).parameters.values())[1:]:
            assert not isinstance(param.default, (int, float)) or isinstance(param.default, bool), \
                f"task {name}: --{param.name} defaults to a number"


def public_targets():
    targets = set(re.findall(r"^([a-z][a-z0-9_-]*):", MAKEFILE, re.M))
    return targets


def test_every_public_make_target_is_in_make_help():
    listed = subprocess.run(["make", "--no-print-directory", "-s", "help"], cwd=ROOT, capture_output=True,
                            text=True).stdout
    shown = set(re.findall(r"^  ([a-z][a-z0-9_-]*) ", listed, re.M))
    assert public_targets(), "no targets found in the Makefile"
    assert public_targets() == shown, f"make help lists {sorted(shown)}, the Makefile has {sorted(public_targets())}"


def readme_commands():
    return set(re.findall(r"`inv ([a-z][a-z0-9_.-]*)", README))


def invocable():
    """Every name `inv` accepts: each task, and each alias (a collection's default task is called by its name)."""
    import tasks

    return {name for task, aliases in tasks.ns.task_names.items() for name in (task, *aliases)}


def test_every_command_the_readme_names_exists():
    names = invocable()
    unknown = sorted(c for c in readme_commands() if c not in names)
    assert not unknown, f"the README names commands that do not exist: {unknown}"


def test_readme_command_table_matches_inv_list():
    import tasks

    table = set(re.findall(r"^\| `inv ([a-z][a-z0-9_.-]*)", README, re.M))
    # a task counts as listed under its own name or any of its aliases
    missing = [t for t, aliases in tasks.ns.task_names.items() if not ({t, *aliases} & table)]
    extra = sorted(table - invocable())
    assert not missing and not extra, f"README table lacks {sorted(missing)}; has extra {extra}"


def test_every_make_target_named_in_the_readme_exists():
    named = set(re.findall(r"`make ([a-z][a-z0-9_-]*)", README))
    assert named <= public_targets(), f"README names make targets that do not exist: {sorted(named - public_targets())}"


@pytest.mark.smoke
def test_listing_tasks_imports_nothing_heavy():
    code = ("import sys, tasks; heavy = [m for m in ('clickhouse_connect', 'chdb', 'rich', 'yoyo', 'crontab', "
            "'pytest', 'dotenv') if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"importing tasks.py pulls in {out.stdout.strip()}; import them lazily"


def test_the_bench_help_names_every_benchmark():
    from ops.dev.benchmarks import BENCHMARKS

    help_text = all_tasks()["bench"].help["only"]
    assert all(name in help_text for name in BENCHMARKS), help_text


def test_listing_tasks_imports_only_the_task_layer_and_what_it_needs_to_start():
    code = "import sys, tasks; print(','.join(sorted(m for m in sys.modules if m.startswith('ops'))))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    loaded = set(out.stdout.strip().split(","))
    library = sorted(m for m in loaded if not m.startswith("ops.cli") and m not in ("ops", "ops.core", "ops.core.errors"))
    assert not library, f"importing tasks.py loads library modules {library}; import them inside the task"


def task_arguments(task):
    """The arguments invoke builds for ``task`` (on a copy: building them consumes the task's help dict)."""
    import copy

    twin = copy.copy(task)
    twin.help = dict(task.help)
    return twin.get_arguments()


def test_one_short_flag_convention_in_every_task():
    # -n is always --dry-run, -j always --json, -y always --yes; any other short flag is its name's first letter
    from ops.cli.base import SHORT_FLAGS

    reserved = {letter: name for name, letter in SHORT_FLAGS.items()}
    for name, task in all_tasks().items():
        for arg in task_arguments(task):
            shorts = [n for n in arg.names if len(n) == 1 and n != arg.names[0]]
            if arg.name in SHORT_FLAGS:
                assert shorts == [SHORT_FLAGS[arg.name]], f"task {name}: --{arg.names[0]} has {shorts}"
            for letter in shorts:
                assert reserved.get(letter, arg.name) == arg.name, \
                    f"task {name}: -{letter} is --{arg.names[0]}, but -{letter} means --{reserved[letter]} everywhere"
                assert arg.name in SHORT_FLAGS or letter == arg.names[0][0], \
                    f"task {name}: -{letter} is not the first letter of --{arg.names[0]}"


def test_every_task_with_json_has_wide_and_the_usual_names():
    for name, task in all_tasks().items():
        names = {arg.name for arg in task_arguments(task)}
        assert ("json" in names) == ("wide" in names), f"task {name}: --wide goes with --json"
        for odd in ("dryrun", "output_json", "assume_yes"):
            assert odd not in names, f"task {name}: --{odd}: the common flags are --dry-run, --json, --yes"


def test_the_readme_says_what_the_code_says_about_writing_a_pipeline():
    # the contract, the decorator's options, every check (with its example and the failure it gives) and the run
    # object come from the docstrings and comments of ops/pipelines; a change there must reach the README
    from ops.dev import pipeline_docs

    shown = pipeline_docs.readme_section(README)
    assert shown is not None, "the README has no 'Writing a pipeline' section: python -m ops.dev.pipeline_docs --write"
    assert shown == pipeline_docs.section(), ("the README's 'Writing a pipeline' differs from the code's docstrings; "
                                              "regenerate it: .venv/bin/python -m ops.dev.pipeline_docs --write")


def test_every_option_and_check_is_documented_in_the_code():
    from ops.dev import pipeline_docs
    from ops.pipelines.definition import Pipeline, checks

    options = {f["name"] for f in pipeline_docs.field_docs(Pipeline)}
    assert options == set(Pipeline.__dataclass_fields__) - pipeline_docs.INTERNAL_FIELDS
    documented = {c["name"] for c in pipeline_docs.check_docs()}
    assert documented == {n for n, m in vars(checks).items() if isinstance(m, staticmethod)}
    assert all(c["fails"] and c["doc"] for c in pipeline_docs.check_docs())
