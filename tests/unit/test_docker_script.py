"""scripts/docker.sh ui-login: the Kafka UI login that every `docker compose` command needs."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def ui_login(env_file: Path, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_UI_")}
    return subprocess.run(
        [str(ROOT / "scripts" / "docker.sh"), "ui-login", str(env_file)],
        env={**clean, **env}, capture_output=True, text=True, check=True, timeout=30,
    ).stdout  # fmt: skip


def logins(env_file: Path) -> list[str]:
    return re.findall(r"^KAFKA_UI_\w+=.*$", env_file.read_text(encoding="utf-8"), re.MULTILINE)


def test_a_missing_login_is_generated_into_env_once(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("API_TOKEN=local-dev-token", encoding="utf-8")  # no final newline
    said = ui_login(env_file)
    assert "wrote a generated Kafka UI login" in said
    first = logins(env_file)
    assert first[0] == "KAFKA_UI_USERNAME=admin"
    assert re.fullmatch(r"KAFKA_UI_PASSWORD=[0-9a-f]{32}", first[1])
    assert env_file.read_text(encoding="utf-8").startswith("API_TOKEN=local-dev-token\n")

    assert ui_login(env_file) == ""
    assert logins(env_file) == first


def test_env_is_created_from_the_example_when_missing(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    ui_login(env_file)
    text = env_file.read_text(encoding="utf-8")
    assert text.startswith((ROOT / ".env.example").read_text(encoding="utf-8"))
    assert len(logins(env_file)) == 2


def test_a_login_from_the_shell_or_the_file_is_left_alone(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("KAFKA_UI_USERNAME=me\nKAFKA_UI_PASSWORD=mine\n", encoding="utf-8")
    assert ui_login(env_file) == ""
    shell = tmp_path / "other.env"
    shell.write_text("", encoding="utf-8")
    assert ui_login(shell, KAFKA_UI_PASSWORD="from-the-shell") == ""
    assert logins(env_file) == ["KAFKA_UI_USERNAME=me", "KAFKA_UI_PASSWORD=mine"]
    assert logins(shell) == []


def test_the_user_name_already_in_env_is_kept(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("KAFKA_UI_USERNAME=ops\n", encoding="utf-8")
    ui_login(env_file)
    assert [line.split("=")[0] for line in logins(env_file)] == [
        "KAFKA_UI_USERNAME",
        "KAFKA_UI_PASSWORD",
    ]
    assert logins(env_file)[0] == "KAFKA_UI_USERNAME=ops"
