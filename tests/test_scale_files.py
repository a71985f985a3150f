"""docker-compose.scale.yml: the replicas it asks for match the ports and URLs it gives them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .test_deploy_files import BIND

ROOT = Path(__file__).resolve().parents[1]


class OverrideLoader(yaml.SafeLoader):
    """Reads compose's ``!override`` tag as the plain sequence it marks."""


OverrideLoader.add_constructor(
    "!override",
    lambda loader, node: loader.construct_sequence(node),  # type: ignore[arg-type]
)


def scale_services() -> dict[str, Any]:
    text = (ROOT / "docker-compose.scale.yml").read_text(encoding="utf-8")
    services: dict[str, Any] = yaml.load(text, Loader=OverrideLoader)["services"]
    return services


def port_range(service: dict[str, Any]) -> tuple[int, int, int]:
    (mapping,) = service["ports"]
    _address, published, target = mapping.rsplit(":", 2)
    first, last = published.split("-")
    return int(first), int(last), int(target)


def test_each_replica_gets_a_host_port_starting_at_the_documented_one() -> None:
    services = scale_services()
    for name, port in (("api", 8000), ("scheduler", 8010)):
        first, last, target = port_range(services[name])
        assert (first, target) == (port, port), name
        assert last - first + 1 == services[name]["deploy"]["replicas"], name


def test_each_range_is_bound_to_the_publish_address_as_in_docker_compose_yml() -> None:
    for name, service in scale_services().items():
        for mapping in service.get("ports", []):
            assert mapping.startswith(f"{BIND}:"), f"{name} publishes {mapping} on every interface"


def test_the_schedulers_list_every_api_replica_by_container_name() -> None:
    services = scale_services()
    replicas = services["api"]["deploy"]["replicas"]
    assert services["scheduler"]["environment"]["API_URL"].split(",") == [
        f"http://fluxo-dados-api-{n}:8000" for n in range(1, replicas + 1)
    ]
