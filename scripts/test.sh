#!/usr/bin/env bash
# Command 2 of the README: runs every test.  Installs what is missing,
# builds, starts the local stack (real PostgreSQL 15 and Kafka 4.x), then
# runs the cmocka unit tests (also under ASan/UBSan) and the integration
# tests (label "integration") through CTest.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${XR_BUILD_DIR:-$ROOT/build}"
ASAN_BUILD="${XR_ASAN_BUILD_DIR:-$ROOT/build-asan}"

usage() {
  cat <<USAGE
Usage: scripts/test.sh [--unit] [--no-asan] [--no-install] [-- CTEST_ARGS...]

  --unit        unit tests only (no stack needed)
  --no-asan     skip the ASan/UBSan build of the unit tests
  --no-install  skip scripts/install-deps.sh
Environment: XR_BUILD_DIR, XR_ASAN_BUILD_DIR; the stack's XR_* variables
(scripts/stack.sh --help).  Long runs (soak, benchmarks) are not part of
this command: see bench/.
USAGE
}

unit_only=0 asan=1 install=1 extra=()
while (($#)); do
  case $1 in
    -h|--help) usage; exit 0 ;;
    --unit) unit_only=1 ;;
    --no-asan) asan=0 ;;
    --no-install) install=0 ;;
    --) shift; extra=("$@"); break ;;
    *) usage >&2; exit 2 ;;
  esac
  shift
done

say() { printf '[test] %s\n' "$*"; }

if ((install)); then "$ROOT/scripts/install-deps.sh"; fi

say "building in $BUILD"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" -j"$(nproc)"

if ((asan)); then
  say "unit tests under ASan/UBSan ($ASAN_BUILD)"
  cmake -S "$ROOT" -B "$ASAN_BUILD" -DCMAKE_BUILD_TYPE=Debug -DXR_SANITIZE=ON >/dev/null
  cmake --build "$ASAN_BUILD" -j"$(nproc)"
  (cd "$ASAN_BUILD" && ctest -L unit --output-on-failure)
fi

if ((unit_only)); then
  (cd "$BUILD" && ctest -L unit --output-on-failure "${extra[@]}")
  exit 0
fi

# With the schema registry: the registry tests need it.
XR_REGISTRY="${XR_REGISTRY:-1}" "$ROOT/scripts/stack.sh" up
(cd "$BUILD" && ctest --output-on-failure "${extra[@]}")
