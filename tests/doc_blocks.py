"""The commands of README.md and docs/*.md, as the docs tests and the docs runner read them.

A fenced block tagged ``sh`` is a command a user runs. The line just above its fence may
mark it ``<!-- not run: <reason> -->``; every other one is run by the system tests, one
file's blocks in document order (``run_blocks``). A ``json`` or ``text`` block right after a
command is that command's output: the runner compares the shape of what the command printed
with it (``same_shape``).
"""

from __future__ import annotations

import json
import re
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NOT_RUN = re.compile(r"^<!-- not run: (.+?) -->$")
FENCE = re.compile(r"^```(\S*)\s*$")
FOLLOWS = re.compile(r"(^|\s)(-f|--follow|-F)(\s|$)|\bmake logs\b")
# Files whose unmarked blocks the system tests run, each in order, and where.
RUN_PATHS = {
    "README.md": "tests/system/test_fresh_machine.py (bare Debian 12 and 13)",
    "docs/docker.md": "tests/system/test_docs_commands.py (the host's Docker engine)",
}


@dataclass(frozen=True)
class Block:
    path: str  # relative to the checkout
    line: int  # of the opening fence, 1-based
    tag: str
    text: str
    not_run: str | None = None  # the reason, when marked
    output: Block | None = None  # the output block shown right after a command

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"

    @property
    def follows_a_log(self) -> bool:
        return bool(FOLLOWS.search(self.text))


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def blocks(path: Path) -> list[Block]:
    """Every fenced block of PATH, commands linked to the output block that follows them."""
    lines = path.read_text(encoding="utf-8").split("\n")
    name = path.relative_to(ROOT).as_posix()
    found: list[Block] = []
    closed = -1  # the line that closed the previous block
    i = 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")), None)
        assert end is not None, f"{name}:{i + 1}: a fence that is never closed"
        marked = NOT_RUN.match(lines[i - 1]) if i else None
        text = "\n".join(lines[i + 1 : end]) + "\n"
        block = Block(name, i + 1, fence.group(1), text, marked.group(1) if marked else None)
        previous = found[-1] if found else None
        # Output follows its command at once, or after one sentence that ends with a colon.
        between = lines[closed + 1 : i]
        if (
            previous
            and previous.tag == "sh"
            and block.tag in ("json", "text")
            and all(not line.strip() or line.rstrip().endswith(":") for line in between)
        ):
            found[-1] = replace(previous, output=block)
        found.append(block)
        closed = end
        i = end + 1
    return found


def commands(path: Path) -> list[Block]:
    return [block for block in blocks(path) if block.tag == "sh"]


def command(prefix: str) -> str:
    """The first command line of the docs that starts with PREFIX, continuations joined and
    its trailing comment dropped."""
    for path in doc_files():
        for block in commands(path):
            for line in block.text.replace("\\\n", " ").splitlines():
                if line.startswith(prefix):
                    return re.sub(r"\s+#.*$", "", line)
    raise AssertionError(f"no command of README.md or docs/ starts with {prefix!r}")


def shape(value: Any) -> Any:
    """The keys of a JSON value, recursively; a list has the shape of its first item."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return None


def _json_values(text: str) -> list[Any]:
    try:
        return [json.loads(text)]
    except ValueError:
        pass
    values = []
    for line in text.splitlines():
        try:
            values.append(json.loads(line))
        except ValueError:
            continue
    return values


def same_shape(expected: Block, printed: str) -> str | None:
    """None when PRINTED has the shape of the output block EXPECTED, else what differs."""
    shown = expected.text
    if shown.startswith("HTTP/"):
        status = shown.split()[1]
        first = printed.lstrip().split("\n", 1)[0]
        if not first.startswith("HTTP/") or first.split()[1:2] != [status]:
            return f"status line {first!r}, the docs show {status}"
        shown = shown.split("\n\n", 1)[1] if "\n\n" in shown else ""
        printed = re.split(r"\r?\n\r?\n", printed, maxsplit=1)[1] if "\n" in printed else ""
    wanted = _json_values(shown)
    if not wanted:
        return None  # plain text: no shape to compare
    want = shape(wanted[0])
    got = [shape(value) for value in _json_values(printed)]
    if want in got:
        return None
    return f"no JSON value with the keys {want} among {got or 'none'}"


def run_blocks(
    path: Path,
    execute: Callable[[str, bool], tuple[int, str, str]],
    retry_for: float = 30,
) -> list[str]:
    """Run PATH's unmarked commands in order with EXECUTE(text, follows_a_log) -> (exit code,
    stdout, stderr); a failing block raises AssertionError. Returns one line per block run."""
    done = []
    for block in commands(path):
        if block.not_run:
            continue
        deadline = time.monotonic() + retry_for
        while True:
            start = time.monotonic()
            code, printed, errors = execute(block.text, block.follows_a_log)
            took = time.monotonic() - start
            problem = None
            if block.follows_a_log:
                if not (printed + errors).strip():
                    problem = "printed nothing in 5 s"
            elif code != 0:
                problem = f"exited {code}"
            elif block.output is not None:
                problem = same_shape(block.output, printed)
            if problem is None or code != 0 or time.monotonic() > deadline:
                break
            time.sleep(1)  # the docs say "within a moment": the user runs it again
        assert problem is None, (
            f"{block.where}: the command {block.text.strip()!r} {problem}\n"
            f"--- stdout (end)\n{printed[-4000:]}\n--- stderr (end)\n{errors[-4000:]}"
        )
        done.append(f"{block.where} ({took:.1f} s): {first_line(block.text)}")
    return done


def first_line(text: str) -> str:
    return text.strip().split("\n", 1)[0]


def following(text: str) -> str:
    """The shell text that runs a block which follows a log: 5 s of it, then stopped."""
    return f"timeout 5 bash -c {shlex.quote(text)}"


def marked_summary() -> list[str]:
    """For a run's summary: how many commands run, and each marked one with its reason."""
    every = [block for path in doc_files() for block in commands(path)]
    marked = [block for block in every if block.not_run]
    lines = [f"{len(every) - len(marked)} commands run by `make test-system`, {len(marked)} not:"]
    lines += [f"  {block.where}: {block.not_run}" for block in marked]
    return lines
