# The optional CPU profile of bench/files.sh and bench/s3-fair.sh (PROFILE=1): one command
# under `perf record`, its hottest symbols, and how much of it is rustic's chunker table
# building (issue 24, point 3: "no per-file table building left in the profile").
# Sourced after lib.sh, not run. Needs $WORK.

# Symbols that build Rabin tables (names as perf prints them, demangled, hash suffixes and
# all). rustic_core 0.13 builds them for every file it chunks: `ChunkIter::from_config`
# calls `rustic_cdc::rolling_hash::Rabin64::new_with_polynom`, which fills its tables with
# `Rabin64::calculate_mod_table` and `Rabin64::calculate_out_table` (polynomial division,
# `<u64 as rustic_cdc::polynom::Polynom>::modulo`); 0.2–0.3 ms per file. The patched copy in
# vendor/rustic_core builds them once per polynomial (`RabinTables::build`, `linear_table` in
# src/chunker/rabin_lanes/tables.rs) and takes them from `RabinTables::cached` afterwards:
# these should be (nearly) absent from the profile. Override with PERF_TABLE_SYMBOLS.
PERF_TABLE_SYMBOLS=${PERF_TABLE_SYMBOLS:-'new_with_polynom|calculate_mod_table|calculate_out_table|polynom(::|\.\.)Polynom|RabinTables::build|linear_table'}

# perf_profile NAME TITLE CMD...: run CMD under `perf record -g` and print a Markdown section
# (### TITLE) on stdout: the sample count, the top symbols by self time, and the share of the
# table-building symbols above. Without perf: how to install it. Never fails the benchmark.
# Knobs: PERF_FREQ (samples per second, default 999), PERF_TOP (lines, default 25).
perf_profile() {
  local name=$1 title=$2; shift 2
  local data="$WORK/perf.$name.data" report="$WORK/perf.$name.txt" err="$WORK/perf.$name.err"
  echo "### $title"
  echo
  if ! command -v perf >/dev/null 2>&1; then
    echo "perf is not installed, so no profile: \`apt-get install linux-perf\` (Debian), then run again with PROFILE=1."
    echo
    return 0
  fi
  log "profiling: $title"
  if ! perf record -F "${PERF_FREQ:-999}" -g -o "$data" -- "$@" >/dev/null 2>"$err"; then
    echo "\`perf record\` failed (last lines of its output below; as non-root, \`sysctl kernel.perf_event_paranoid=1\` may be needed):"
    echo
    echo '```'
    tail -n 8 "$err"
    echo '```'
    echo
    return 0
  fi
  # Self time per symbol, every thread of the process (and its children) together.
  perf report -i "$data" --stdio --no-children --sort dso,symbol -g none --percent-limit 0 \
    > "$report" 2>/dev/null || true
  local lines="$WORK/perf.$name.lines" hits="$WORK/perf.$name.tables" samples table
  # (perf 6.x adds empty IPC columns, `-  -`, at the end of each line: dropped.)
  grep -E '^ +[0-9.]+%' "$report" | sed -E 's/([[:space:]]+-)+[[:space:]]*$//' > "$lines" || true
  grep -E -- "$PERF_TABLE_SYMBOLS" "$lines" > "$hits" || true
  samples=$(awk '/^# Samples/ { sub(/^# /, ""); print; exit }' "$report")
  table=$(awk '{ s += $1 } END { printf "%.2f", s }' "$hits")
  echo "\`perf record -F ${PERF_FREQ:-999} -g\` of \`$(basename "$1") ${*:2}\`; ${samples:-no sample count}. Self time per symbol, top ${PERF_TOP:-25}:"
  echo
  echo '```'
  awk -v n="${PERF_TOP:-25}" 'NR <= n' "$lines"
  echo '```'
  echo
  echo "Rabin table building (symbols matching \`$PERF_TABLE_SYMBOLS\`): **${table}%** of the samples."
  echo
  if [ -s "$hits" ]; then
    echo '```'
    awk 'NR <= 10' "$hits"
    echo '```'
  else
    echo "None of them has a sample: no per-file table building is left."
  fi
  echo
  echo "(Full report: \`perf report -i $data\`, kept with KEEP_WORK=1.)"
  echo
}
