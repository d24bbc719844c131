"""`python -m stages.<name> --help` prints usage and runs nothing, for every DVC stage and for predict."""

import subprocess
import sys

import yaml

from transfer import paths

STAGE_MODULES = sorted(
    {
        body.get("do", body)["cmd"].split()[2]
        for body in yaml.safe_load((paths.PROJECT_ROOT / "dvc.yaml").read_text())["stages"].values()
    }
    | {"stages.predict"}
)
# One process for all of them (torch is imported once): each module runs as __main__ with --help,
# and argparse's exit 0 after printing usage ends it; anything else is reported.
HELP_EVERY_MODULE = """
import runpy, sys
for module in sys.argv[1:]:
    sys.argv = [module, "--help"]
    print(f"=== {module}", flush=True)
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        print(f"{module}: returned without exiting", flush=True)
    except SystemExit as exit_:
        print(f"{module}: exit {exit_.code}", flush=True)
"""


def test_help_prints_usage_for_every_stage_and_writes_nothing(tmp_path):
    # An empty folder without params.yaml: a stage that ran instead of printing help would fail or write here.
    result = subprocess.run(
        [sys.executable, "-c", HELP_EVERY_MODULE, *STAGE_MODULES],
        cwd=tmp_path,
        env={"PYTHONPATH": str(paths.PROJECT_ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    sections = result.stdout.split("=== ")[1:]
    assert [section.splitlines()[0] for section in sections] == STAGE_MODULES
    for module, section in zip(STAGE_MODULES, sections, strict=True):
        assert f"usage: python -m {module}" in section, section
        assert section.rstrip().endswith(f"{module}: exit 0"), section
    assert list(tmp_path.iterdir()) == []
