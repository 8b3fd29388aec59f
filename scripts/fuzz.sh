#!/usr/bin/env bash
# Builds the libFuzzer harnesses of tests/fuzz (clang-14, ASan/UBSan) in
# their own build directory and runs each for a while on a copy of its seed
# corpus.  Prints per harness the executions, exec/s and any findings;
# exits non-zero when a harness found something.  docs/fuzzing.md says more.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${XR_FUZZ_BUILD_DIR:-$ROOT/build-fuzz}"
WORK="${XR_FUZZ_WORK_DIR:-$BUILD/fuzz-work}"
CC_FUZZ="${XR_FUZZ_CC:-clang-14}"
HARNESSES=(pgoutput event schema_registry config)

usage() {
  cat <<USAGE
Usage: scripts/fuzz.sh [--seconds N] [--only NAME] [--no-build] [-- LIBFUZZER_ARGS...]

Builds tests/fuzz/fuzz_<name>.c with $CC_FUZZ -fsanitize=fuzzer,address,undefined
in $BUILD and runs each harness for N seconds (default 60, or
\$XR_FUZZ_SECONDS) on a copy of tests/fuzz/corpus/<name> and
tests/fuzz/regressions/<name> in $WORK/<name>/corpus
(the repository is not written; what a run adds to the corpus stays in the
work directory for the next run).
Harnesses: ${HARNESSES[*]}

  --seconds N  seconds per harness; 0 runs nothing (builds nothing either)
  --only NAME  only that harness (repeatable)
  --no-build   use the harnesses already built in $BUILD
  -h, --help   this help

Long runs: XR_FUZZ_SECONDS=3600 scripts/fuzz.sh (an hour per harness).
A finding (crash, leak, sanitizer report, timeout) is kept as
$WORK/<name>/findings/crash-* (or leak-*, timeout-*, oom-*) with the log next to it;
reproduce it with: $BUILD/tests/fuzz/fuzz_<name> FILE
Environment: XR_FUZZ_SECONDS, XR_FUZZ_BUILD_DIR, XR_FUZZ_WORK_DIR,
XR_FUZZ_CC (default clang-14), XR_FUZZ_JOBS (build parallelism).
Exit status: 0 no finding, 1 a finding, 2 usage or build error.
USAGE
}

seconds="${XR_FUZZ_SECONDS:-60}" build=1 only=() extra=()
while (($#)); do
  case $1 in
    -h|--help) usage; exit 0 ;;
    --seconds) [[ -n ${2:-} ]] || { usage >&2; exit 2; }
               seconds=$2; shift ;;
    --only) [[ -n ${2:-} ]] || { usage >&2; exit 2; }
            only+=("$2"); shift ;;
    --no-build) build=0 ;;
    --) shift; extra=("$@"); break ;;
    *) usage >&2; exit 2 ;;
  esac
  shift
done
[[ $seconds =~ ^[0-9]+$ ]] || { echo "fuzz.sh: --seconds: not a number: $seconds" >&2; exit 2; }
if ((${#only[@]})); then
  for h in "${only[@]}"; do
    [[ " ${HARNESSES[*]} " == *" $h "* ]] || { echo "fuzz.sh: no harness $h (${HARNESSES[*]})" >&2; exit 2; }
  done
  HARNESSES=("${only[@]}")
fi

say() { printf '[fuzz] %s\n' "$*"; }

if ((seconds == 0)); then
  say "0 seconds: skipped"
  exit 0
fi

if ((build)); then
  command -v "$CC_FUZZ" >/dev/null || {
    echo "fuzz.sh: $CC_FUZZ not found (scripts/install-deps.sh installs clang-14 and libclang-rt-14-dev)" >&2
    exit 2; }
  say "building in $BUILD ($CC_FUZZ)"
  targets=()
  for h in "${HARNESSES[@]}"; do targets+=(--target "fuzz_$h"); done
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_C_COMPILER="$CC_FUZZ" -DXR_FUZZ=ON \
        -DXR_BUILD_TESTS=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null || exit 2
  cmake --build "$BUILD" -j"${XR_FUZZ_JOBS:-$(nproc)}" "${targets[@]}" >/dev/null || exit 2
fi

# LeakSanitizer is part of ASan's default; detect_leaks=1 says so anyway.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

found=() summary=() newfiles=()
for h in "${HARNESSES[@]}"; do
  bin="$BUILD/tests/fuzz/fuzz_$h"
  [[ -x $bin ]] || { echo "fuzz.sh: $bin not built" >&2; exit 2; }
  dir="$WORK/$h"
  mkdir -p "$dir/corpus" "$dir/findings"
  # The seeds, and the inputs of past findings (fixed, kept as seeds so
  # that every run tries them again).
  for seeds in "$ROOT/tests/fuzz/corpus/$h" "$ROOT/tests/fuzz/regressions/$h"; do
    [[ -d $seeds ]] && cp -n "$seeds/"* "$dir/corpus/" 2>/dev/null || true
  done
  log="$dir/run.log"
  say "$h: ${seconds}s on $(find "$dir/corpus" -type f | wc -l) inputs"
  before=$(find "$dir/findings" -type f ! -name '*.log' | sort)
  rc=0
  # -rss_limit_mb: a decoder asked for gigabytes by a corrupt count is a
  # finding too (libFuzzer's oom-*).
  "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
         -max_len=65536 -print_final_stats=1 \
         -artifact_prefix="$dir/findings/" "${extra[@]}" \
         "$dir/corpus" >"$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  new=$(comm -13 <(echo "$before") <(find "$dir/findings" -type f ! -name '*.log' | sort))
  line=$(printf '%-16s %12s execs %8s exec/s' "$h" "${execs:-?}" "${speed:-?}")
  if ((rc != 0)) || [[ -n $new ]]; then
    stamp=$(date +%Y%m%d-%H%M%S)
    cp "$log" "$dir/findings/run-$stamp.log"
    line="$line  FINDING (exit $rc): $(grep -m1 -E '^==[0-9]+==ERROR|runtime error|^SUMMARY' "$log" || echo "see $dir/findings/run-$stamp.log")"
    found+=("$h")
    while read -r f; do [[ -n $f ]] && newfiles+=("$f"); done <<<"$new"
  fi
  summary+=("$line")
  say "$line"
done

say "summary (${seconds}s each):"
for l in "${summary[@]}"; do printf '  %s\n' "$l"; done
if ((${#found[@]})); then
  say "findings in: ${found[*]}"
  for f in "${newfiles[@]}"; do printf '  %s\n' "$f"; done
  say "reproduce: $BUILD/tests/fuzz/fuzz_<name> <finding file>"
  exit 1
fi
say "no findings"
