"""What reaches the api from outside: the Ingress's hosts and paths, and the Gateway API HTTPRoute,
which routes the same public prefixes and validates against the HTTPRoute CRD's own schema."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import pytest
import yaml

from tests.deploy import gateway_api
from tests.deploy.chart import (
    CHART,
    GATEWAY_VALUES,
    PRODUCTION_VALUES,
    ROOT,
    Manifest,
    component,
    helm,
    of_kind,
    render,
)

API_PREFIXES = {"/api", "/auth"}
KIND = ROOT / "deploy" / "kind"
KIND_GATEWAY_VALUES = (
    KIND / "envoy-gateway-values.yaml"
)  # make kind-deploy KIND_ROUTER=envoy-gateway
GATEWAY = ("httpRoute.enabled=true", "httpRoute.parentRefs[0].name=eg")
# Ingress pathType -> the HTTPRoute path match type that means the same.
PATH_TYPES = {"Prefix": "PathPrefix", "Exact": "Exact"}
# The Gateway API's standard channel: the schema we have is the experimental one (a superset).
STANDARD_RULE_FIELDS = {"matches", "backendRefs", "filters"}


def ingress_routes(manifests: list[Manifest]) -> set[tuple[str, str, str]]:
    """(host, path, pathType) of every Ingress rule, each checked to reach the api Service."""
    (ingress,) = of_kind(manifests, "Ingress")
    service = component(manifests, "Service", "api")["metadata"]["name"]
    routes = set()
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            assert path["backend"]["service"] == {"name": service, "port": {"name": "http"}}
            routes.add((rule.get("host", ""), path["path"], path["pathType"]))
    return routes


def http_route(manifests: list[Manifest]) -> Manifest:
    (route,) = of_kind(manifests, "HTTPRoute")
    return route


def validate_http_route(route: Manifest) -> None:
    """Validate against the CRD's HTTPRoute v1 openAPIV3Schema, unknown fields refused."""
    schema = gateway_api.strict(gateway_api.httproute_schema())
    assert route["apiVersion"] in schema["properties"]["apiVersion"]["enum"]
    assert route["kind"] in schema["properties"]["kind"]["enum"]
    jsonschema.validate(route["spec"], schema["properties"]["spec"])


# --- the Ingress ---------------------------------------------------------------------------------


def test_the_default_ingress_routes_both_prefixes_for_any_host() -> None:
    assert ingress_routes(render()) == {("", "/api", "Prefix"), ("", "/auth", "Prefix")}


def test_each_ingress_host_gets_its_own_paths() -> None:
    manifests = render(
        sets=(
            "ingress.hosts[0].host=todo.example.com",
            "ingress.hosts[1].host=api.example.com",
            "ingress.hosts[1].paths[0].path=/api/v1.0/todos",
            "ingress.hosts[1].paths[0].pathType=Exact",
        )
    )
    assert ingress_routes(manifests) == {
        ("todo.example.com", "/api", "Prefix"),  # paths left out: both prefixes
        ("todo.example.com", "/auth", "Prefix"),
        ("api.example.com", "/api/v1.0/todos", "Exact"),
    }


def test_the_production_values_route_their_host_over_tls() -> None:
    manifests = render(PRODUCTION_VALUES)
    assert ingress_routes(manifests) == {
        ("todo.example.com", "/api", "Prefix"),
        ("todo.example.com", "/auth", "Prefix"),
    }
    (ingress,) = of_kind(manifests, "Ingress")
    assert ingress["spec"]["tls"] == [
        {"secretName": "todo-example-com-tls", "hosts": ["todo.example.com"]}
    ]


def test_the_deprecated_single_host_still_routes_both_prefixes() -> None:
    manifests = render(sets=("ingress.host=todo.example.com",))
    assert ingress_routes(manifests) == {
        ("todo.example.com", "/api", "Prefix"),
        ("todo.example.com", "/auth", "Prefix"),
    }


@pytest.mark.parametrize(
    ("path", "path_type", "complaint"),
    [
        ("/metrics", "Prefix", "does not match pattern"),
        ("/", "Prefix", "does not match pattern"),
        ("/apiary", "Prefix", "does not match pattern"),  # not a path under /api
        ("/api/../metrics", "Prefix", "does not match pattern"),
        ("/api//healthz", "Prefix", "does not match pattern"),
        ("/api/.*", "Prefix", "does not match pattern"),  # a regex on some controllers
        ("/api", "ImplementationSpecific", "value must be one of 'Prefix', 'Exact'"),
    ],
)
def test_ingress_paths_outside_the_public_api_are_refused(
    path: str, path_type: str, complaint: str
) -> None:
    result = helm(
        "template",
        "todo",
        str(CHART),
        "--set-string",
        f"ingress.hosts[0].paths[0].path={path}",
        "--set",
        f"ingress.hosts[0].paths[0].pathType={path_type}",
    )
    assert result.returncode != 0
    assert "at '/ingress/hosts/0/paths/0/path" in result.stderr, result.stderr
    assert complaint in result.stderr, result.stderr


def test_an_ingress_needs_at_least_one_host_rule() -> None:
    result = helm("template", "todo", str(CHART), "--set", "ingress.hosts=null")
    assert result.returncode != 0
    assert "at '/ingress': missing property 'hosts'" in result.stderr, result.stderr


# --- the HTTPRoute -------------------------------------------------------------------------------


def test_there_is_no_http_route_by_default() -> None:
    assert of_kind(render(), "HTTPRoute") == []
    assert of_kind(render(PRODUCTION_VALUES), "HTTPRoute") == []


def test_the_http_route_routes_exactly_what_the_ingress_routes() -> None:
    manifests = render(sets=GATEWAY)
    route = http_route(manifests)
    service = component(manifests, "Service", "api")
    (http_port,) = [port["port"] for port in service["spec"]["ports"] if port["name"] == "http"]
    (rule,) = route["spec"]["rules"]
    matched = {(match["path"]["value"], match["path"]["type"]) for match in rule["matches"]}
    from_ingress = {(path, PATH_TYPES[kind]) for _, path, kind in ingress_routes(manifests)}
    assert matched == from_ingress == {(prefix, "PathPrefix") for prefix in API_PREFIXES}
    assert rule["backendRefs"] == [{"name": service["metadata"]["name"], "port": http_port}]
    assert route["metadata"]["name"] == service["metadata"]["name"]


def test_the_gateway_values_attach_the_route_to_their_gateway() -> None:
    manifests = render(PRODUCTION_VALUES, GATEWAY_VALUES)
    assert of_kind(manifests, "Ingress") == []
    route = http_route(manifests)
    assert route["spec"]["parentRefs"] == [
        {"name": "shared-gateway", "namespace": "envoy-gateway-system", "sectionName": "https"}
    ]
    assert route["spec"]["hostnames"] == ["todo.example.com"]
    assert route["metadata"]["labels"]["gateway"] == "shared"
    policy = component(manifests, "NetworkPolicy", "api")
    sources = [peer for rule in policy["spec"]["ingress"] for peer in rule["from"]]
    gateway_namespace = {"kubernetes.io/metadata.name": "envoy-gateway-system"}
    assert {"namespaceSelector": {"matchLabels": gateway_namespace}} in sources


@pytest.mark.parametrize(
    "values",
    [
        pytest.param((), id="parentRef-only"),
        pytest.param((PRODUCTION_VALUES, GATEWAY_VALUES), id="gateway-values"),
        pytest.param((KIND_GATEWAY_VALUES,), id="kind-envoy-gateway"),
    ],
)
def test_the_http_route_validates_against_the_crd_schema(values: tuple[Any, ...]) -> None:
    sets = GATEWAY if not values else ()
    route = http_route(render(*values, sets=sets))
    validate_http_route(route)
    # Only standard-channel fields: the schema we have also admits the experimental ones.
    assert set(route["spec"]) <= {"parentRefs", "hostnames", "rules"}
    for rule in route["spec"]["rules"]:
        assert set(rule) <= STANDARD_RULE_FIELDS


@pytest.mark.parametrize(
    ("where", "bad"),
    [
        ("parentRefs", [{"namespace": "envoy-gateway-system"}]),  # no name
        ("hostnames", ["Todo.Example.com"]),  # not a lower-case DNS name
        ("rules", [{"matches": [{"path": {"type": "Regex", "value": "/api"}}]}]),
        ("rules", [{"backendRefs": [{"name": "todo-api", "port": 70000}]}]),
        ("unknownField", True),
    ],
)
def test_the_crd_schema_check_refuses_a_broken_route(where: str, bad: object) -> None:
    """The validation above can fail: the same route with one field broken does."""
    route = copy.deepcopy(http_route(render(sets=GATEWAY)))
    route["spec"][where] = bad
    with pytest.raises(jsonschema.ValidationError):
        validate_http_route(route)


def test_the_kind_route_attaches_to_the_kind_gateway() -> None:
    """deploy/kind/envoy-gateway.yaml's Gateway admits the route kind-deploy renders."""
    documents = list(yaml.safe_load_all((KIND / "envoy-gateway.yaml").read_text()))
    (gateway,) = [doc for doc in documents if doc["kind"] == "Gateway"]
    (class_,) = [doc for doc in documents if doc["kind"] == "GatewayClass"]
    assert gateway["spec"]["gatewayClassName"] == class_["metadata"]["name"]
    manifests = render(KIND_GATEWAY_VALUES)
    assert of_kind(manifests, "Ingress") == []
    (parent,) = http_route(manifests)["spec"]["parentRefs"]
    assert parent["name"] == gateway["metadata"]["name"]
    # No namespace: the route's own, `default` where kind-deploy installs (no -n), as the Gateway's.
    assert "namespace" not in parent
    assert gateway["metadata"]["namespace"] == "default"
    (listener,) = [
        item for item in gateway["spec"]["listeners"] if item["name"] == parent["sectionName"]
    ]
    assert listener["protocol"] == "HTTP"
    assert listener["allowedRoutes"]["namespaces"]["from"] == "Same"


def test_an_http_route_without_parent_refs_is_refused_with_a_clear_message() -> None:
    result = helm("template", "todo", str(CHART), "--set", "httpRoute.enabled=true")
    assert result.returncode != 0
    assert "httpRoute.parentRefs is required when httpRoute.enabled" in result.stderr


def test_the_pinned_gateway_api_package_is_checked() -> None:
    with pytest.raises(RuntimeError, match="the pin is"):
        gateway_api._check_integrity(b"not the tarball")
