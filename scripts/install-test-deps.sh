#!/usr/bin/env bash
# Installs what herald's tests need, and only what is missing, so running it twice costs nothing:
# Debian packages (redis-cli/redis-benchmark, a reference redis-server and openssl for its TLS
# certificates, php with phpredis, predis and Laravel 8 for the real broadcaster, SQLite for the
# users of the channel-authorization app, chromium for the browser test), then the Node test
# suite's pinned npm packages. The Rust
# toolchain (cargo, rustfmt, clippy) must already be there.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(redis-tools redis-server openssl php-cli php-redis php-predis php-laravel-framework php-sqlite3 chromium)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$pkg")
  fi
done
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  missing+=(nodejs npm)
fi
if ((${#missing[@]})); then
  echo "install-test-deps: installing ${missing[*]}"
  sudo=()
  if [[ $(id -u) -ne 0 ]]; then sudo=(sudo); fi
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

for tool in cargo rustfmt cargo-clippy; do
  if ! command -v "$tool" >/dev/null; then
    echo "install-test-deps: $tool is missing; install Rust with rustup (components rustfmt, clippy)" >&2
    exit 1
  fi
done

# npm ci wipes node_modules, so run it only when package-lock.json changed since the last install.
clients=tests/clients
if [[ -f $clients/package-lock.json ]]; then
  stamp=$clients/node_modules/.herald-lock.sha256
  want=$(sha256sum "$clients/package-lock.json" | cut -d' ' -f1)
  if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
    echo "install-test-deps: npm ci in $clients"
    (cd "$clients" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$want" >"$stamp"
  fi
else
  (cd "$clients" && npm install --no-audit --no-fund --loglevel=error)
fi
