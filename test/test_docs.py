"""Every command line that README.md and docs/ show is checked here, so that none of them rots:

- ``global-loc ...``: parsed by the real argument parser (each option exists and takes what it
  is given); the cheap ones run for real elsewhere (test_cli, test_bags, test_sfm);
- ``python benchmarks/X.py ...``: the script exists and its ``--help`` names each option used;
- ``ros2 launch global_loc X.launch.py ...``: the launch file exists and declares each argument;
  the other ``ros2 ...`` lines of the README run on a live graph (test_ros_live);
- ``make X``: the Makefile has the target; ``pip install -e '.[x]'``: setup.py has the extra.
"""
from __future__ import annotations

import ast
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from global_loc.cli.main import _build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _strip_comment(line: str) -> str:
    out, quote = [], None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            break
        out.append(ch)
    return "".join(out).strip()


def shown_commands(path: Path) -> list[str]:
    """The command lines of ``path``: those of its ``bash`` blocks (continuations joined,
    comments dropped, ``a && b`` split), and inline code that runs a benchmark, a launch file or
    a make target (inline ``global-loc --option`` mentions name an option, not a command line)."""
    text = path.read_text()
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = _strip_comment(line)
            out += [part.strip() for part in re.split(r"&&|;", line) if part.strip()]
    for code in re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S)):
        if re.match(r"(python benchmarks/|ros2 launch \w|make \w)", code) and "..." not in code \
                and "<" not in code:
            out.append(code.strip())
    return out


ALL = [(p.relative_to(ROOT).as_posix(), c) for p in DOCS for c in shown_commands(p)]


def test_the_docs_show_commands_and_the_readme_guides():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 300
    for heading in ("## Contents", "## Two commands", "## On your robot", "## From photos alone", "## Command line",
                    "## ROS 2", "## Install"):
        assert heading in readme
    for link in re.findall(r"\]\((docs/[^)#]+)", readme):  # every linked document exists
        assert (ROOT / link).is_file(), link
    assert sum(c.startswith("global-loc ") for _, c in ALL) >= 30


def _expand(command: str) -> list[str]:
    """``[--x y]`` optional parts kept, ``a|b`` alternatives: the first."""
    command = re.sub(r"\[([^\[\]]*)\]", r"\1", command)
    return [t.split("|")[0] if re.fullmatch(r"[\w.-]+(\|[\w.-]+)+", t) else t for t in shlex.split(command)]


@pytest.mark.parametrize("where,command", [a for a in ALL if a[1].startswith("global-loc ")],
                         ids=lambda v: v[:70])
def test_global_loc_command_lines_parse(where, command):
    argv = [t for t in _expand(command)[1:] if t != "..."]
    try:
        _build_parser().parse_args(argv)
    except SystemExit as e:
        pytest.fail(f"{where}: `{command}` does not parse ({e})")


def _launch_arguments(name: str) -> set[str]:
    return set(re.findall(r'DeclareLaunchArgument\("(\w+)"', (ROOT / "launch" / name).read_text()))


@pytest.mark.parametrize("where,command", [a for a in ALL if a[1].startswith(("ros2 launch", "make ", "pip install",
                                                                               "python benchmarks/"))])
def test_other_command_lines_name_what_exists(where, command):
    tokens = _expand(command)
    if tokens[:2] == ["ros2", "launch"]:
        assert tokens[2] == "global_loc" and (ROOT / "launch" / tokens[3]).is_file(), command
        given = {t.split(":=")[0] for t in tokens[4:] if ":=" in t}
        assert given <= _launch_arguments(tokens[3]), f"{where}: {given - _launch_arguments(tokens[3])}"
    elif tokens[0] == "make":
        targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))
        assert all(t in targets or "=" in t for t in tokens[1:]), f"{where}: {command}"
    elif tokens[:2] == ["pip", "install"]:
        extras = re.findall(r"\.\[(\w+)\]", command)
        tree = ast.parse((ROOT / "setup.py").read_text())
        declared = {k.value for node in ast.walk(tree) if isinstance(node, ast.Dict) for k in node.keys
                    if isinstance(k, ast.Constant)}
        assert all(e in declared for e in extras), f"{where}: {command}"
    else:
        script = ROOT / tokens[1]
        assert script.is_file(), f"{where}: {script} does not exist"
        options = [t for t in tokens[2:] if t.startswith("--")]
        if options:
            out = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True,
                                 timeout=120, cwd=ROOT)
            assert out.returncode == 0, out.stderr[-2000:]
            for o in options:
                assert o in out.stdout, f"{where}: {script.name} has no option {o}"
