#!/usr/bin/env bash
# Every check herald has, as CI runs it: installs missing test dependencies, then formatting,
# lints, the docs (every intra-doc link resolves), the build, all Rust tests (unit,
# integration, the real Laravel broadcaster through php) and the Node suite of real npm
# clients against the built binary. Each step is a suite; all run
# even when one fails, the last line counts them, and the exit status is non-zero if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-deps.sh || { echo "0 passed, 1 failed (installing test dependencies)"; exit 1; }

passed=0
failed=0
failures=()
suite() {
  local name=$1
  shift
  echo "==> $name: $*"
  local start=$SECONDS
  if "$@"; then
    passed=$((passed + 1))
    echo "==> $name: ok ($((SECONDS - start)) s)"
  else
    failed=$((failed + 1))
    failures+=("$name")
    echo "==> $name: FAILED ($((SECONDS - start)) s)"
  fi
}

node_tests() {
  # The Node suite starts target/debug/herald, which `cargo build` just produced.
  (cd tests/clients && HERALD_BIN="$PWD/../../target/debug/herald" npm test)
}

suite fmt cargo fmt --check
suite clippy cargo clippy --all-targets -- -D warnings
suite docs env RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --document-private-items
suite build cargo build
suite rust-tests cargo test --no-fail-fast
suite node-tests node_tests

if ((failed)); then
  echo "failed: ${failures[*]}"
fi
echo "$passed passed, $failed failed"
((failed == 0))
