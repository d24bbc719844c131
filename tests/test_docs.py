"""The documentation cannot drift from the project: README.md and docs/*.md are read as a user would use them.

Every `-S` override of a `dvc exp run` names a key params.yaml has (or adds one with a leading `+`) and, applied
as DVC applies it, gives params that pass the config's validation; every `python -m stages.<name>` and
`make <target>` exists; every relative link reaches its file and heading; every project file named exists, and
docs/architecture.md names every library module. No DVC command runs, nothing trains.
"""

import re
import shlex
import shutil
from pathlib import Path

import pytest
import yaml
from dvc.exceptions import InvalidArgumentError
from dvc.utils.hydra import apply_overrides, get_hydra_sweeps

from transfer import paths
from transfer.config import parse_params
from transfer.errors import UserError

ROOT = paths.PROJECT_ROOT
DOCS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
# Pages and Makefile targets that other branches of the same change add; the docs name them already. Empty these
# once they are merged: test_pending_entries_are_still_missing fails as soon as one exists, so none lingers.
PENDING_PAGES: set[str] = set()
PENDING_MAKE_TARGETS: set[str] = set()

FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`([^`]+)`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*$", re.MULTILINE)
STAGE_MODULE = re.compile(r"-m stages\.([a-z_]+)")
MAKE_TARGET = re.compile(r"(?:^|[\s;&|(])make ([a-z][\w-]*)")
SET_PARAM_FLAGS = ("-S", "--set-param")
MAKE_RULE = re.compile(r"^([A-Za-z][\w-]*)\s*:(?!=)", re.MULTILINE)
# A path under one of the project's folders, as docs name files in inline code.
PROJECT_FILE = re.compile(r"(?<![\w/])((?:transfer|stages|tests|tools|benchmarks|vendor|\.dvc|\.ci)/[\w./<>*-]*\w)")
ARCHITECTURE_PAGE = "docs/architecture.md"


def doc_id(path: Path) -> str:
    """A doc's path relative to the project root, as a test id."""
    return str(path.relative_to(ROOT))


def commands(text: str) -> list[str]:
    """Every command a doc shows: each logical line of a fenced block, and each inline code span outside them."""
    found = []
    for block in FENCE.findall(text):
        body = block.split("\n", 1)[1].rsplit("```", 1)[0]
        found += [line for line in body.replace("\\\n", " ").splitlines() if line.strip()]
    found += [span.replace("\n", " ") for span in INLINE_CODE.findall(FENCE.sub("", text))]
    return found


def overrides_of(command: str) -> list[str]:
    """The values of a command's -S flags, unquoted as the shell would (comments dropped)."""
    words = shlex.split(command, comments=True)
    return [value for flag, value in zip(words, words[1:]) if flag in SET_PARAM_FLAGS]


def override_commands() -> list[tuple[str, list[str]]]:
    """(doc id, overrides) for every command in the docs with at least one -S."""
    found = []
    for doc in DOCS:
        for command in commands(doc.read_text()):
            if "-S " in command or "--set-param " in command:
                found.append((doc_id(doc), overrides_of(command)))
    return found


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation but hyphens dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.replace("`", "").lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a markdown file, repeated headings numbered as GitHub numbers them."""
    seen: dict[str, int] = {}
    found = set()
    for heading in HEADING.findall(FENCE.sub("", path.read_text())):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def makefile_targets() -> set[str]:
    """The rule names of the project's Makefile."""
    return set(MAKE_RULE.findall((ROOT / "Makefile").read_text()))


def test_the_docs_are_found():
    # A glob that finds nothing would pass every check below.
    assert DOCS[0].is_file() and len(DOCS) > 1
    assert override_commands(), "no dvc exp run -S found in the docs"


@pytest.mark.parametrize(("doc", "overrides"), override_commands(), ids=lambda value: str(value))
def test_params_overrides_name_real_keys_with_valid_values(doc: str, overrides: list[str], tmp_path: Path):
    # Applied as `dvc exp run -S` applies them (Hydra's grammar, `+` to add a key, a comma list a queue
    # sweep), together with the command's other overrides, to the committed params.yaml.
    params_file = tmp_path / "params.yaml"
    command = f"{doc}: dvc exp run -S {' -S '.join(overrides)}"
    for sweep in get_hydra_sweeps({str(params_file): overrides}):
        shutil.copyfile(ROOT / paths.PARAMS_PATH, params_file)
        try:
            apply_overrides(params_file, sweep[str(params_file)])  # an unknown key without +, a + on a present one
            parse_params(yaml.safe_load(params_file.read_text()))
        except InvalidArgumentError as error:
            pytest.fail(f"{command}: {error.__cause__}")
        except UserError as error:
            pytest.fail(f"{command}: {error}")


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_stage_modules_exist(doc: Path):
    modules = {name for command in commands(doc.read_text()) for name in STAGE_MODULE.findall(command)}
    missing = sorted(name for name in modules if not (ROOT / "stages" / f"{name}.py").is_file())
    assert not missing, f"{doc_id(doc)} runs python -m stages.<name> for missing modules: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_make_targets_exist(doc: Path):
    shown = commands(doc.read_text())
    targets = {name for command in shown for name in MAKE_TARGET.findall(command)}
    missing = sorted(targets - makefile_targets() - PENDING_MAKE_TARGETS)
    assert not missing, f"{doc_id(doc)} names make targets the Makefile lacks: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_relative_links_reach_their_file_and_heading(doc: Path):
    broken = []
    for target in LINK.findall(FENCE.sub("", doc.read_text())):
        if re.match(r"[a-z]+:", target):  # https:, mailto:: not checked offline
            continue
        file_part, _, anchor = target.partition("#")
        linked = (doc.parent / file_part).resolve() if file_part else doc
        if linked.relative_to(ROOT).as_posix() in PENDING_PAGES:
            continue
        if not linked.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target} (no heading #{anchor})")
    assert not broken, f"{doc_id(doc)} has broken links: {broken}"


def test_pending_entries_are_still_missing():
    # Once a pending page or target exists it is checked like any other: take it off the pending list.
    arrived = sorted(page for page in PENDING_PAGES if (ROOT / page).exists())
    arrived += sorted(makefile_targets() & PENDING_MAKE_TARGETS)
    assert not arrived, f"now in the project, remove from PENDING_PAGES / PENDING_MAKE_TARGETS: {arrived}"


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_named_project_files_exist(doc: Path):
    spans = INLINE_CODE.findall(FENCE.sub("", doc.read_text()))
    named = {path for span in spans for path in PROJECT_FILE.findall(span)}
    missing = sorted(path for path in named if "<" not in path and "*" not in path and not (ROOT / path).exists())
    assert not missing, f"{doc_id(doc)} names files that do not exist: {missing}"


def test_architecture_page_names_every_library_module():
    # The module index is the one place a newcomer finds a module by its job; a new module must appear there.
    page = (ROOT / ARCHITECTURE_PAGE).read_text()
    modules = [path for path in (ROOT / "transfer").rglob("*.py") if path.name != "__init__.py"]
    missing = sorted(str(path.relative_to(ROOT)) for path in modules if path.name not in page)
    assert not missing, f"{ARCHITECTURE_PAGE} does not list: {missing}"
