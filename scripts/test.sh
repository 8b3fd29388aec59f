#!/usr/bin/env bash
# Command 2 of the README: runs every test.  Installs what is missing,
# builds, starts the local stack (real PostgreSQL and Kafka 4.x), then runs
# the cmocka unit tests (also under ASan/UBSan), the decoders' fuzzers
# (scripts/fuzz.sh, 60 s each) and the integration tests (label
# "integration") through CTest: on PostgreSQL 15, then again on 17.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${XR_BUILD_DIR:-$ROOT/build}"
ASAN_BUILD="${XR_ASAN_BUILD_DIR:-$ROOT/build-asan}"

usage() {
  cat <<USAGE
Usage: scripts/test.sh [--unit] [--no-asan] [--no-fuzz] [--no-install]
                       [--pg "15 17"] [--all-pg] [-- CTEST_ARGS...]

  --unit        unit tests (and the fuzzers) only (no stack needed)
  --no-asan     skip the ASan/UBSan build of the unit tests
  --no-fuzz     skip the fuzzers (the same as XR_FUZZ_SECONDS=0)
  --no-install  skip scripts/install-deps.sh
  --pg LIST     PostgreSQL major versions to run the integration tests on,
                in order (default: "15 17", or \$XR_TEST_PG); the first one
                runs the unit tests too
  --all-pg      the same as --pg "15 16 17 18"
Environment: XR_BUILD_DIR, XR_ASAN_BUILD_DIR, XR_TEST_PG,
XR_FUZZ_SECONDS (seconds per fuzzer after the unit tests, default 60; 0
skips them; scripts/fuzz.sh --help); the stack's XR_* variables
(scripts/stack.sh --help).  Long runs (soak, benchmarks, fuzzing for an
hour: XR_FUZZ_SECONDS=3600) are not part of this command: see bench/ and
docs/fuzzing.md.
USAGE
}

unit_only=0 asan=1 fuzz=1 install=1 extra=()
read -r -a pgs <<<"${XR_TEST_PG:-15 17}"
check_pgs() {
  ((${#pgs[@]})) || { echo "test.sh: no PostgreSQL version to test" >&2; exit 2; }
  local v
  for v in "${pgs[@]}"; do
    [[ $v =~ ^(15|16|17|18)$ ]] || { echo "test.sh: PostgreSQL $v: not 15-18" >&2; exit 2; }
  done
}
while (($#)); do
  case $1 in
    -h|--help) usage; exit 0 ;;
    --unit) unit_only=1 ;;
    --no-asan) asan=0 ;;
    --no-fuzz) fuzz=0 ;;
    --no-install) install=0 ;;
    --pg) [[ -n ${2:-} ]] || { usage >&2; exit 2; }
          read -r -a pgs <<<"$2"; shift ;;
    --all-pg) pgs=(15 16 17 18) ;;
    --) shift; extra=("$@"); break ;;
    *) usage >&2; exit 2 ;;
  esac
  shift
done

say() { printf '[test] %s\n' "$*"; }
check_pgs

if ((install)); then
  pg_args=()
  if ((!unit_only)); then
    for v in "${pgs[@]}"; do pg_args+=(--pg "$v"); done
  fi
  "$ROOT/scripts/install-deps.sh" "${pg_args[@]}"
fi

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
fi

# The decoders' fuzzers (libFuzzer, clang-14), after the unit tests and
# before the stack: they need no server.
if ((fuzz)); then
  say "fuzzers, ${XR_FUZZ_SECONDS:-60} s each (XR_FUZZ_SECONDS)"
  "$ROOT/scripts/fuzz.sh" --seconds "${XR_FUZZ_SECONDS:-60}"
fi

if ((unit_only)); then
  exit 0
fi

# With the schema registry: the registry tests need it.  Each version has
# clusters of its own on the same ports: 'up' stops the previous ones.
first=1 failed=()
for v in "${pgs[@]}"; do
  say "PostgreSQL $v"
  export XR_PG_VERSION="$v"
  unset XR_PG_BIN
  eval "$(XR_REGISTRY="${XR_REGISTRY:-1}" "$ROOT/scripts/stack.sh" env | grep -E 'XR_PG_(VERSION|BIN)=')"
  if ! XR_REGISTRY="${XR_REGISTRY:-1}" "$ROOT/scripts/stack.sh" up; then
    failed+=("$v (the stack did not start)")
    first=0
    continue
  fi
  if ((first)); then
    (cd "$BUILD" && ctest --output-on-failure "${extra[@]}") || failed+=("$v")
  else
    (cd "$BUILD" && ctest -L integration --output-on-failure "${extra[@]}") || failed+=("$v")
  fi
  first=0
done
if ((${#failed[@]})); then
  say "FAILED on PostgreSQL ${failed[*]}"
  exit 1
fi
say "all tests passed on PostgreSQL ${pgs[*]}"
