"""Validates a Compose file offline, as `docker compose config` would, without an engine.

The file must fit the Compose Specification's JSON schema (deploy/compose-spec.schema.json,
vendored from the specification's repository; compose-go, the reference implementation,
validates against the same schema), checked with jsonschema. Then what the schema cannot
express: every `depends_on` names a service, and each way the README starts the file (the
default services; the split profile's services named on the command line) starts a
complete set, with its dependencies and without the other topology.

    python scripts/validate-compose.py compose.yaml deploy/compose-spec.schema.json
"""

import json
import sys

import jsonschema
import yaml


def services_started(services, profiles, named=()):
    """The services `docker compose [--profile p] up [named...]` starts, dependencies
    included (a service named on the command line starts whatever its profiles)."""
    if named:
        wanted = set(named)
    else:
        wanted = {name for name, service in services.items()
                  if not service.get("profiles") or set(service["profiles"]) & set(profiles)}
    started = set()
    while wanted:
        name = wanted.pop()
        if name in started:
            continue
        started.add(name)
        wanted |= set(dependencies(services[name]))
    return started


def dependencies(service):
    depends_on = service.get("depends_on") or {}
    return list(depends_on) if isinstance(depends_on, (dict, list)) else []


def main(compose_path, schema_path):
    with open(compose_path, encoding="utf-8") as file:
        # Anchors and `<<` merge keys are resolved here, as Compose resolves them.
        document = yaml.safe_load(file)
    with open(schema_path, encoding="utf-8") as file:
        schema = json.load(file)
    validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker())
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    for error in errors:
        where = "/".join(str(part) for part in error.absolute_path) or "(top level)"
        print(f"{compose_path}: {where}: {error.message}", file=sys.stderr)
    if errors:
        return 1

    services = document["services"]
    problems = []
    for name, service in services.items():
        for dependency in dependencies(service):
            if dependency not in services:
                problems.append(f"service {name} depends on {dependency}, which does not exist")
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1

    monolith = services_started(services, profiles=())
    split = services_started(services, profiles=("split",), named=("core", "payments", "notifications"))
    expected_monolith = {"postgres", "bulkhead"}
    if monolith != expected_monolith:
        problems.append(f"`docker compose up` starts {sorted(monolith)}, not {sorted(expected_monolith)}")
    if "bulkhead" in split or not {"postgres", "migrate", "service-keys"} <= split:
        problems.append(f"the split topology starts {sorted(split)}")
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    print(f"{compose_path}: valid; default: {', '.join(sorted(monolith))}; split: {', '.join(sorted(split))}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(f"usage: {sys.argv[0]} COMPOSE_FILE SCHEMA")
    sys.exit(main(sys.argv[1], sys.argv[2]))
