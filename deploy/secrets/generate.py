#!/usr/bin/env python3
"""Fill in deploy/secrets/secrets.yaml: the deploy's passwords, keys and tokens, never stored in git.

    kubectl -n nano-orders get secret broker-credentials app-secrets --ignore-not-found -o json \\
      | python3 deploy/secrets/generate.py | kubectl apply -f -        (what deploy/up.sh does)
    python3 deploy/secrets/generate.py --sample                        (fixed stand-ins, for the checks)

Reads the cluster's current Secrets (kubectl's JSON, a List or one object; empty input for none) on stdin and
keeps every value they hold, so a redeploy never changes a password under running brokers; a value they do
not hold is generated at random (`secrets.token_hex`, 256 bits). Writes the filled-in template to stdout. The
values that are derived from another (the Redis URLs carry redis-password) are filled in from it every time.
--sample fills in fixed, distinct stand-ins instead (`sample-<key>`), so the offline checks render and can
tell which Secret key reached which app. Needs only the Python standard library.
"""
from __future__ import annotations

import base64
import json
import re
import secrets
import string
import sys
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent / "secrets.yaml"
CONFIG_ENV = Path(__file__).resolve().parents[1] / "config.env"
# (Secret, key) -> the template's name for its value. Only these are kept or generated; the other keys of
# the template are derived from them.
OWN = {
    ("broker-credentials", "redis-password"): "redis_password",
    ("broker-credentials", "mqtt-username"): "mqtt_username",
    ("broker-credentials", "mqtt-password"): "mqtt_password",
    ("app-secrets", "message-key"): "message_key",
    ("app-secrets", "sweep-token"): "sweep_token",
}
# The user name is not a secret, but it comes from the same Secret as the password it goes with.
FIXED = {"mqtt_username": "nano-orders"}
# URL-unreserved characters only: each value goes into a URL (the Redis URLs), TOML and YAML as it is; and
# no leading '-', which redis-server's command line would read as an option.
SAFE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")


class SecretsError(Exception):
    """A value kept from the cluster cannot be used."""


def namespace() -> str:
    for line in CONFIG_ENV.read_text().splitlines():
        if line.startswith("NAMESPACE="):
            return line.partition("=")[2].strip()
    raise SecretsError(f"{CONFIG_ENV} has no NAMESPACE=")


def existing_values(kubectl_json: str) -> dict[str, str]:
    """The template names of the values the cluster's Secrets already hold (non-empty ones only)."""
    if not kubectl_json.strip():
        return {}
    doc = json.loads(kubectl_json)
    found = {}
    for obj in doc.get("items", [doc]) if doc.get("kind") == "List" else [doc]:
        name = obj.get("metadata", {}).get("name")
        for key, value in (obj.get("data") or {}).items():
            if (name, key) in OWN and value:
                found[OWN[(name, key)]] = base64.b64decode(value).decode()
    return found


def values(kept: dict[str, str] | None = None, sample: bool = False) -> dict[str, str]:
    """Every value the template needs: `kept` ones as they are, the others generated (or stand-ins)."""
    kept = kept or {}
    out = {}
    for name in OWN.values():
        if name in kept:
            value = kept[name]
        elif sample:
            value = "sample-" + name.replace("_", "-")
        else:
            value = FIXED.get(name) or secrets.token_hex(32)
        if not SAFE.match(value):
            raise SecretsError(f"{name} is empty, starts with '-' or holds characters other than letters, digits, '-' and '_'; it goes into "
                               "URLs as it is: replace it (or delete the Secret to have a new one generated)")
        out[name] = value
    return out | {"namespace": namespace()}


def render(filled: dict[str, str]) -> str:
    """The template with every `${name}` filled in; an unknown name is an error, not left in place."""
    return string.Template(TEMPLATE.read_text()).substitute(filled)


def main(argv: list[str]) -> int:
    sample = "--sample" in argv
    try:
        kept = {} if sample else existing_values(sys.stdin.read() if not sys.stdin.isatty() else "")
        sys.stdout.write(render(values(kept, sample)))
    except (SecretsError, ValueError, KeyError) as err:
        print(f"deploy/secrets/generate.py: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
