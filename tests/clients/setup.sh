#!/usr/bin/env bash
# Installs what the driver tests (crates/qube-pgwire/tests/it/drivers.rs)
# need, idempotently and quickly:
#   - Debian: a JDK, pgjdbc (libpostgresql-jdbc-java), Node.js and npm,
#     python3 with venv — each only when missing;
#   - PyPI: psycopg (binary) and SQLAlchemy, pinned, into a venv;
#   - npm: node-postgres (pg), pinned, into a local prefix.
# The venv and node prefix live in $QUBEDB_CLIENTS_CACHE (default
# .ci-cache/clients at the repository root, git-ignored). Run it again at
# will: what is there at the pinned version is kept.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cache="${QUBEDB_CLIENTS_CACHE:-$root/.ci-cache/clients}"

PSYCOPG_VERSION=3.3.9
SQLALCHEMY_VERSION=2.1.9
PG_NODE_VERSION=8.23.1

if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo -n"; fi
apt_pkgs=()
command -v javac >/dev/null 2>&1 || apt_pkgs+=(default-jdk-headless)
[ -f /usr/share/java/postgresql.jar ] || apt_pkgs+=(libpostgresql-jdbc-java)
command -v node >/dev/null 2>&1 || apt_pkgs+=(nodejs)
command -v npm >/dev/null 2>&1 || apt_pkgs+=(npm)
command -v python3 >/dev/null 2>&1 || apt_pkgs+=(python3)
if command -v python3 >/dev/null 2>&1 && ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    apt_pkgs+=(python3-venv)
fi
if [ "${#apt_pkgs[@]}" -gt 0 ]; then
    echo "clients/setup: apt-get install ${apt_pkgs[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${apt_pkgs[@]}" >/dev/null
fi

mkdir -p "$cache"
venv="$cache/venv"
want_py="psycopg==$PSYCOPG_VERSION psycopg-binary==$PSYCOPG_VERSION sqlalchemy==$SQLALCHEMY_VERSION"
if [ "$(cat "$venv/.pinned" 2>/dev/null)" != "$want_py" ]; then
    echo "clients/setup: venv $venv ($want_py)"
    rm -rf "$venv"
    python3 -m venv "$venv"
    # shellcheck disable=SC2086
    "$venv/bin/pip" install -q --disable-pip-version-check --no-input $want_py
    echo "$want_py" > "$venv/.pinned"
fi

node_prefix="$cache/node"
if [ "$(cat "$node_prefix/.pinned" 2>/dev/null)" != "pg@$PG_NODE_VERSION" ]; then
    echo "clients/setup: npm pg@$PG_NODE_VERSION into $node_prefix"
    rm -rf "$node_prefix"
    mkdir -p "$node_prefix"
    npm install --prefix "$node_prefix" --no-audit --no-fund --loglevel=error "pg@$PG_NODE_VERSION" >/dev/null
    echo "pg@$PG_NODE_VERSION" > "$node_prefix/.pinned"
fi
echo "clients/setup: ready in $cache"
