"""README.md and docs/*.md hold together: each command is run or says why not, each link
resolves, and the make targets they name are the Makefile's."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from .doc_blocks import ROOT, RUN_PATHS, Block, commands, doc_files, same_shape

LINK = re.compile(r"(?<!\\)\[[^\]]*\]\(([^)\s]+)\)")
CODE_SPAN = re.compile(r"`([^`\n]+)`")
MAKE = re.compile(r"(?:^|[\s;(]|&&)make ([a-z.][a-z.-]*)")


def every_command() -> list[Block]:
    return [block for path in doc_files() for block in commands(path)]


def test_every_command_outside_the_run_files_is_marked_with_its_reason() -> None:
    unmarked = [
        block.where
        for block in every_command()
        if block.path not in RUN_PATHS and not block.not_run
    ]
    assert not unmarked, (
        f"these sh blocks are neither run by the system tests nor marked: {unmarked}; "
        "put `<!-- not run: <reason> -->` on the line above the fence, or run them "
        f"(the runner runs the blocks of {sorted(RUN_PATHS)})"
    )
    assert all(reason.strip() for block in every_command() if (reason := block.not_run))


def test_the_readme_path_runs_in_the_order_a_newcomer_follows() -> None:
    run = [block.text for block in commands(ROOT / "README.md") if not block.not_run]
    order = [
        "make up",
        "curl -i -X POST http://localhost:8000/produto/manual",
        "make psql",
        'curl -H "Authorization: Bearer local-dev-token" http://localhost:8000/produtos/',
        "make read-topic",
        "make read-topic TOPIC=cadastro-produtos.dlq",
        "curl -X POST http://localhost:8010/consumer/replay",
        "curl -s http://localhost:8010/ ",
        "make down",
    ]
    assert len(run) == len(order), run
    for text, start in zip(run, order, strict=True):
        assert text.startswith(start), f"expected a block starting {start!r}, found {text!r}"


def test_the_compose_path_runs_every_command_a_compose_user_types() -> None:
    run = "".join(block.text for block in commands(ROOT / "docs/docker.md") if not block.not_run)
    for command in (
        "make compose-up",
        "docker compose exec postgres psql",
        "docker compose logs",
        "docker compose ps",
        "docker logs -f fluxo-dados-api-1",
        "make compose-down",
    ):
        assert command in run, f"docs/docker.md runs no {command!r}"
    assert run.index("make compose-up") == 0 and run.rstrip().endswith("make compose-down")


def test_output_blocks_are_compared_by_shape() -> None:
    shown = [block for block in commands(ROOT / "README.md") if block.output]
    assert len(shown) >= 4, "the README shows the output of the POST, GET, topic and replay"
    replay = next(b for b in shown if "replay" in b.text)
    assert replay.output is not None
    good = '{"positions": {"0": 9, "1": 0, "2": 0, "3": 4, "4": 0, "5": 0}}'
    assert same_shape(replay.output, good) is None
    assert same_shape(replay.output, '{"error": {"code": "x"}}') is not None
    post = next(b for b in shown if "/produto/manual" in b.text)
    assert post.output is not None
    body = post.output.text.split("\n\n", 1)[1]
    assert same_shape(post.output, "HTTP/1.1 202 Accepted\r\nA: b\r\n\r\n" + body) is None
    problem = same_shape(post.output, "HTTP/1.1 401 Unauthorized\r\n\r\n" + body)
    assert problem is not None and "202" in problem


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    inside = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            inside = not inside
        elif not inside and (heading := re.match(r"^#{1,6} (.+)$", line)):
            base = slug(heading.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def prose(path: Path) -> str:
    """PATH without its fenced blocks."""
    return re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.M | re.S)


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_and_anchor_resolves(path: Path) -> None:
    broken = []
    for target in LINK.findall(prose(path)):
        if re.match(r"^[a-z]+:", target):
            continue  # http:, https:, mailto:
        file, _, anchor = target.partition("#")
        resolved = (path.parent / file).resolve() if file else path
        if not resolved.exists():
            broken.append(f"{target} (no file {resolved.relative_to(ROOT)})")
        elif anchor and anchor not in anchors(resolved):
            broken.append(f"{target} (no heading #{anchor} in {resolved.relative_to(ROOT)})")
    assert not broken, f"{path.relative_to(ROOT)}: broken links {broken}"


def test_slugs_follow_github() -> None:
    assert slug("On a machine without Docker or a registry: `make compose-up`") == (
        "on-a-machine-without-docker-or-a-registry-make-compose-up"
    )
    assert slug("Where is my record: traces") == "where-is-my-record-traces"


def named_targets() -> set[str]:
    names = set()
    for path in doc_files():
        code = CODE_SPAN.findall(prose(path)) + [block.text for block in commands(path)]
        names |= {name for span in code for name in MAKE.findall(span)}
    return names


def help_targets() -> set[str]:
    shown = subprocess.run(
        ["make", "--no-print-directory", "help"],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=30,
    ).stdout  # fmt: skip
    return set(re.findall(r"^  make (\S+)", shown, re.MULTILINE))


def test_make_help_and_the_docs_name_the_same_targets() -> None:
    named, listed = named_targets(), help_targets()
    assert not named - listed, f"the docs name targets make help does not list: {named - listed}"
    assert not listed - named, f"make help lists targets no doc mentions: {listed - named}"
