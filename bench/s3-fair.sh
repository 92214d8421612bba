#!/usr/bin/env bash
# Benchmark (issue 24, point 4): fair S3 targets. A bucket backed up and restored by lifeboat
# against what a runbook does with restic, which can neither read nor write a bucket: copy
# the bucket to a local folder with rclone, then back that folder up with restic; restore
# with restic to a folder, then copy it into a bucket with rclone. The same S3 server as
# bench/s3.sh (moto, in memory, on this machine; S3_SERVER=s3s-fs for s3s-fs), the same
# bucket (`media`: OBJECTS random objects of OBJECT_KIB KiB, keys img/NNN/I.jpg), both
# repositories on that server. ROUNDS rounds (default 3), each with fresh repositories
# (lifeboat: s3://lbrepo/rN, restic: s3:…/resticrepo/rN) and an empty local folder:
#
#   first backup        lifeboat backup media                 (a bucket target)
#                       vs  rclone sync srv:media $WORK/mirror  +  restic backup $WORK/mirror
#   incremental backup  CHANGED_PCT% of the objects (default 1%) replaced with new bytes of
#                       the same size, then both ways again (lifeboat and restic each find
#                       their parent snapshot; rclone downloads what changed)
#   restore             lifeboat restore media --to s3://lbrestore/rN
#                       vs  restic restore latest --target $WORK/restored
#                           +  rclone sync $WORK/restored/… srv:rcloneup/rN
#
# The order alternates (odd rounds lifeboat first). Every command is timed with
# /usr/bin/time (wall; the tool's own CPU: user + system of the process and its children)
# and the S3 server's CPU over the same interval is read from /proc/<server pid>/stat
# (utime + stime, all its threads), as bench/s3.sh does: the server shares the two cores,
# and serving GETs and PUTs costs it more than a backup from local disk. `sync` runs before
# each command (untimed: the restic way's local folder is flushed between rclone and restic
# for free, in its favour). Medians over the rounds; the restic way's figure is, per round,
# rclone + restic. Speedup = restic way ÷ lifeboat, wall time. Targets (issue 24, point 4):
# ≥ 1.0× for the first backup, ≥ 2× for the incremental one; the restore "likewise"
# (reported against ≥ 1.0×). Each restored prefix is compared with the bucket afterwards
# (`rclone check`: names, sizes, MD5; untimed; VERIFY=0 skips it).
#
# rclone runs as a runbook tuned by rclone's own S3 documentation would: how it lists,
# RCLONE_LIST:
#   walk            (default against s3s-fs) rclone's default: folder by folder, 8 at once
#                   (`--checkers`); s3s-fs answers a folder without walking the bucket.
#   fast            (default against moto) `--fast-list`: one listing request per 1000
#                   objects, one after the other. Lists nothing on s3s-fs (see SYNC=aws).
# `--transfers $RCLONE_TRANSFERS` (8, as bench/s3.sh), and how it decides that an object
# is unchanged, RCLONE_CHECK:
#   server-modtime  (default) `--use-server-modtime`: size and the listed last-modified time
#                   against the local file's (set to it on download); no request per object
#                   and no local reads — what `aws s3 sync` does; the cheapest correct way.
#   checksum        `--checksum`: size and MD5 (the listed ETag) against the local file's
#                   MD5, read on every sync — rclone's documented recommendation.
#   modtime         rclone's default: the mtime rclone keeps in each object's metadata, one
#                   HEAD per object (40 s per sync of 10,000 objects on moto, bench/s3.sh).
#
# SYNC=aws uses `aws s3 sync` (AWS CLI v1, `--endpoint-url`, path-style addressing) in
# rclone's place, both ways; downloads with `--exact-timestamps` (without it aws s3 sync
# never downloads a changed object of the same size). rclone 1.60 with `--fast-list`
# lists with an empty `delimiter=`, which s3s-fs 0.14.1 answers with no objects (its
# default folder walk works there). Caveat
# (docs/benchmarks.md): s3s-fs lists times to the millisecond and aws s3 sync keeps whole
# seconds locally, so with `--exact-timestamps` every incremental sync downloads the whole
# bucket again. The restored prefixes are compared with the bucket by listing (names,
# sizes) and by reading every object back (MD5).
#
# PROFILE=1 adds a CPU profile (`perf record -g`) of one more first bucket backup by lifeboat
# (fresh repository s3://lbrepo/profile): top symbols and the share of rustic's Rabin table
# building (issue 24, point 3: none per object should be left).
#
#   bench/s3-fair.sh                               # 10,000 × 100 KiB, 3 rounds, moto
#   OBJECTS=1000 ROUNDS=1 bench/s3-fair.sh         # a quick run (a minute or two)
#   S3_SERVER=s3s-fs bench/s3-fair.sh              # against s3s-fs, rclone walking folders
#   RCLONE_CHECK=checksum bench/s3-fair.sh         # rclone comparing MD5s
#   S3_SERVER=s3s-fs SYNC=aws bench/s3-fair.sh     # s3s-fs, with aws s3 sync
#
# Knobs: OBJECTS (10000), OBJECT_KIB (100), CHANGED_PCT (1), ROUNDS (3), SEED (1),
# S3_SERVER (moto | s3s-fs), SYNC (rclone | aws), RCLONE_LIST (walk | fast),
# RCLONE_CHECK (server-modtime | checksum | modtime),
# RCLONE_TRANSFERS (8), VERIFY (1), PROFILE (0), S3PORT (55453),
# WORK (/tmp/lifeboat-bench-s3-fair), KEEP_WORK (0), LIFEBOAT_BIN (a given binary).
#
# No PostgreSQL is started. Prints a Markdown report on stdout (copy it into
# docs/benchmarks.md); raw figures in $WORK/rounds.tsv (kept with KEEP_WORK=1).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib-perf.sh"

OBJECTS=${OBJECTS:-10000}
OBJECT_KIB=${OBJECT_KIB:-100}
CHANGED_PCT=${CHANGED_PCT:-1}
ROUNDS=${ROUNDS:-3}
SEED=${SEED:-1}
S3_SERVER=${S3_SERVER:-moto}
RCLONE_CHECK=${RCLONE_CHECK:-server-modtime}
RCLONE_TRANSFERS=${RCLONE_TRANSFERS:-8}
VERIFY=${VERIFY:-1}
PROFILE=${PROFILE:-0}
S3PORT=${S3PORT:-55453}
WORK=${WORK:-/tmp/lifeboat-bench-s3-fair}

case $RCLONE_CHECK in
  server-modtime) RCLONE_CMP=(--use-server-modtime)
    CMP_TEXT="\`--use-server-modtime\`: an object is unchanged when its size and listed last-modified time equal the local file's (no request per object, no local reads; what \`aws s3 sync\` does)" ;;
  checksum) RCLONE_CMP=(--checksum)
    CMP_TEXT="\`--checksum\`: size and MD5 (the listed ETag) against the local file's MD5, read on every sync (rclone's documented recommendation)" ;;
  modtime) RCLONE_CMP=()
    CMP_TEXT="rclone's default comparison: the modification time kept in each object's metadata, one HEAD per object" ;;
  *) echo "RCLONE_CHECK is server-modtime, checksum or modtime" >&2; exit 2 ;;
esac
if [ -z "${RCLONE_LIST:-}" ]; then
  if [ "$S3_SERVER" = s3s-fs ]; then RCLONE_LIST=walk; else RCLONE_LIST=fast; fi
fi
case $RCLONE_LIST in
  walk) RCLONE_LISTING=() ;;
  fast) RCLONE_LISTING=(--fast-list) ;;
  *) echo "RCLONE_LIST is walk or fast" >&2; exit 2 ;;
esac
RCLONE=(rclone "${RCLONE_LISTING[@]}" --transfers "$RCLONE_TRANSFERS" "${RCLONE_CMP[@]}")
SYNC=${SYNC:-rclone}
case $SYNC in
  rclone) SYNC_NAME=rclone ;;
  aws) SYNC_NAME="aws s3 sync"
    command -v aws >/dev/null || { echo "needs the AWS CLI: python3 -m pip install awscli" >&2; exit 2; }
    CMP_TEXT="\`aws s3 sync\` ($(aws --version 2>&1 | cut -d' ' -f1)), \`--only-show-errors\`, its default 10 requests at a time; downloads with \`--exact-timestamps\` (an object is copied when its size or its last-modified time differs from the local file's, set to it on download: without the flag, aws s3 sync never downloads a changed object of the same size again, and every incremental run missed the changes)" ;;
  *) echo "SYNC is rclone or aws" >&2; exit 2 ;;
esac

[ -x /usr/bin/time ] || { echo "needs /usr/bin/time: apt-get install time" >&2; exit 2; }
command -v restic >/dev/null || { echo "needs restic: bash scripts/install-deps.sh" >&2; exit 2; }
command -v rclone >/dev/null || { echo "installing rclone" >&2; apt-get install -y -qq rclone >/dev/null; }
build_lifeboat

rm -rf "$WORK"; mkdir -p "$WORK"
BUCKETS=(lbrepo resticrepo media lbrestore rcloneup)
case "$S3_SERVER" in
  moto)
    python3 -c 'import moto.server' 2>/dev/null || { echo "needs moto: bash scripts/install-deps.sh" >&2; exit 2; }
    python3 -m moto.server -H 127.0.0.1 -p "$S3PORT" > "$WORK/s3.log" 2>&1 &
    SERVER_TEXT="moto $(python3 -c 'import moto; print(moto.__version__)') (S3 in memory, same machine)" ;;
  s3s-fs)
    for b in "${BUCKETS[@]}"; do mkdir -p "$WORK/s3s/$b"; done
    PATH="$PATH:${CARGO_HOME:-$HOME/.cargo}/bin" s3s-fs --host 127.0.0.1 --port "$S3PORT" \
      --access-key bench --secret-key bench "$WORK/s3s" > "$WORK/s3.log" 2>&1 &
    SERVER_TEXT="s3s-fs 0.14.1 (S3 in Rust, objects in a folder on the same disk)" ;;
  *) echo "S3_SERVER is moto or s3s-fs" >&2; exit 2 ;;
esac
S3PID=$!
trap 'kill $S3PID 2>/dev/null || true; remove_work' EXIT
ENDPOINT="http://127.0.0.1:$S3PORT"
for _ in $(seq 1 300); do curl -s -o /dev/null "$ENDPOINT/" && break; sleep 0.2; done
curl -s -o /dev/null "$ENDPOINT/" || { cat "$WORK/s3.log" >&2; echo "the S3 server did not start" >&2; exit 1; }
if [ "$S3_SERVER" = moto ]; then
  for b in "${BUCKETS[@]}"; do curl -s -o /dev/null -X PUT "$ENDPOINT/$b"; done
fi

export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench
# rclone 1.60 fails on a custom CA bundle ("HTTPClient's transport unsupported type");
# the server here is plain HTTP.
unset AWS_CA_BUNDLE
# The AWS CLI: path-style addressing, the region, no other profile.
printf '[default]\nregion = us-east-1\ns3 =\n    addressing_style = path\n' > "$WORK/aws-config"
export AWS_CONFIG_FILE="$WORK/aws-config" AWS_SHARED_CREDENTIALS_FILE=/dev/null
AWS_SYNC=(aws s3 sync --only-show-errors --endpoint-url "$ENDPOINT")
# The sync commands (arrays, for /usr/bin/time): `down` sets DOWN, which copies the bucket
# into $MIRROR; `up ROUND` sets UP, which copies the restored folder into a prefix.
down() {
  # --exact-timestamps: without it, aws s3 sync never downloads an object of the same size
  # again (its default keeps a same-size local file unless it is newer than the object):
  # every incremental run would miss the changed objects.
  if [ "$SYNC" = aws ]; then DOWN=("${AWS_SYNC[@]}" --exact-timestamps s3://media "$MIRROR")
  else DOWN=("${RCLONE[@]}" sync srv:media "$MIRROR"); fi
}
up() {
  if [ "$SYNC" = aws ]; then UP=("${AWS_SYNC[@]}" "$RESTORED$MIRROR" "s3://rcloneup/r$1")
  else UP=("${RCLONE[@]}" sync "$RESTORED$MIRROR" "srv:rcloneup/r$1"); fi
}
# same_objects PREFIX: whether s3://PREFIX holds what s3://media holds (names, sizes and
# ETags, by listing; rclone check when SYNC=rclone).
same_objects() {
  # rclone check compares MD5s from listed ETags: moto lists them, s3s-fs does not.
  if [ "$SYNC" = rclone ] && [ "$S3_SERVER" = moto ]; then
    rclone check --fast-list srv:media "srv:$1"; return
  fi
  python3 - "$ENDPOINT" "$1" <<'PY'
import hashlib, sys, boto3
from concurrent.futures import ThreadPoolExecutor
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1")
def listing(bucket, prefix):
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            out[o["Key"][len(prefix):]] = o["Size"]
    return out
def digest(bucket, key):
    return hashlib.md5(s3.get_object(Bucket=bucket, Key=key)["Body"].read()).hexdigest()
bucket, _, prefix = sys.argv[2].partition("/")
a, b = listing("media", ""), listing(bucket, prefix + "/")
print(len(a), "objects in media,", len(b), "in", sys.argv[2])
if a != b or not a:
    sys.exit(1)
# s3s-fs lists no ETags: the content is read back and compared.
with ThreadPoolExecutor(16) as pool:
    x = dict(zip(a, pool.map(lambda k: digest("media", k), a)))
    y = dict(zip(a, pool.map(lambda k: digest(bucket, prefix + "/" + k), a)))
sys.exit(0 if x == y else 1)
PY
}
# The remote `srv:` from the environment, no config file.
export RCLONE_CONFIG_SRV_TYPE=s3 RCLONE_CONFIG_SRV_PROVIDER=Other \
  RCLONE_CONFIG_SRV_ENDPOINT="$ENDPOINT" RCLONE_CONFIG_SRV_ACCESS_KEY_ID=bench \
  RCLONE_CONFIG_SRV_SECRET_ACCESS_KEY=bench RCLONE_CONFIG_SRV_FORCE_PATH_STYLE=true
echo "bench-password" > "$WORK/password"
export RESTIC_PASSWORD_FILE="$WORK/password"
# Both tools' local caches in the scratch folder: lifeboat's (rustic's) under
# $XDG_CACHE_HOME/rustic, restic's in $RESTIC_CACHE_DIR. Emptied at the start of each round.
export XDG_CACHE_HOME="$WORK/cache" RESTIC_CACHE_DIR="$WORK/cache/restic"
MIRROR="$WORK/mirror"
RESTORED="$WORK/restored"
TSV="$WORK/rounds.tsv"; : > "$TSV"

# `objects.py ROOT N KIB SEED` writes the objects (img/NNN/I.jpg, random bytes from SEED);
# `objects.py ROOT N KIB SEED ROUND PCT` writes PCT% of them again with new bytes.
cat > "$WORK/objects.py" <<'PY'
import os, random, sys

root, n, kib, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]

def write(i, version):
    d = os.path.join(root, "img", "%03d" % (i % 100))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "%d.jpg" % i), "wb") as f:
        f.write(random.Random(f"{seed}:{i}:{version}").randbytes(kib * 1024))

if len(sys.argv) == 5:
    for i in range(n):
        write(i, 0)
    print(n)
else:
    rnd, pct = int(sys.argv[5]), float(sys.argv[6])
    k = max(1, round(n * pct / 100))
    for i in random.Random(f"{seed}:change:{rnd}").sample(range(n), k):
        write(i, rnd)
    print(k)
PY

log "generating $OBJECTS objects of $OBJECT_KIB KiB and uploading them with rclone"
python3 "$WORK/objects.py" "$WORK/objects" "$OBJECTS" "$OBJECT_KIB" "$SEED" >/dev/null
BUCKET_BYTES=$(bytes "$WORK/objects")
"${RCLONE[@]}" copy "$WORK/objects" srv:media
rm -rf "$WORK/objects"

server_cpu() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$S3PID/stat"; }

# measure ROUND STEP CMD...: a line of $TSV: round, step, wall s, the command's CPU s
# (children included), the S3 server's CPU s meanwhile.
measure() {
  local round=$1 step=$2 s0 s1; shift 2
  sync
  s0=$(server_cpu)
  /usr/bin/time -o "$WORK/time" -f "%e %U %S" "$@" >/dev/null 2>"$WORK/stderr" ||
    { cat "$WORK/stderr" >&2; echo "failed: $step (round $round)" >&2; exit 1; }
  s1=$(server_cpu)
  tail -n 1 "$WORK/time" | awk -v r="$round" -v s="$step" -v a="$s0" -v b="$s1" \
    '{ printf "%s\t%s\t%.2f\t%.2f\t%.2f\n", r, s, $1, $2 + $3, b - a }' >> "$TSV"
}

# lb_config NAME: $WORK/NAME.toml, repository s3://lbrepo/NAME, bucket target `media`;
# the repository initialised.
lb_config() {
  cat > "$WORK/$1.toml" <<CONF
[repository]
url = "s3://lbrepo/$1"
endpoint = "$ENDPOINT"
path-style = true
password-file = "$WORK/password"

[targets.media]
kind = "bucket"
url = "s3://media"
CONF
  "$LIFEBOAT" -q -c "$WORK/$1.toml" init >/dev/null
}

# remove_prefix BUCKET/PREFIX: a round's data off the server (untimed), so that moto's
# memory does not grow with the rounds.
remove_prefix() {
  if [ "$S3_SERVER" = s3s-fs ]; then rm -rf "${WORK:?}/s3s/$1"
  else rclone purge --fast-list --checkers 32 "srv:$1" >/dev/null 2>&1 || true; fi
}

# The two ways, per phase. lifeboat: one command; the restic way: rclone, then restic.
lifeboat_way() {  # ROUND PHASE
  local cfg="$WORK/r$1.toml"
  case $2 in
    first) measure "$1" lb_first "$LIFEBOAT" -q -c "$cfg" backup media ;;
    incremental) measure "$1" lb_incr "$LIFEBOAT" -q -c "$cfg" backup media ;;
    restore) measure "$1" lb_restore "$LIFEBOAT" -q -c "$cfg" restore media --to "s3://lbrestore/r$1" ;;
  esac
}
restic_way() {  # ROUND PHASE
  case $2 in
    first)
      down
      measure "$1" rc_first "${DOWN[@]}"
      measure "$1" rs_first restic backup -q "$MIRROR" ;;
    incremental)
      down
      measure "$1" rc_incr "${DOWN[@]}"
      measure "$1" rs_incr restic backup -q "$MIRROR" ;;
    restore)
      measure "$1" rs_restore restic restore -q latest --target "$RESTORED"
      up "$1"
      measure "$1" rc_restore "${UP[@]}" ;;
  esac
}

CHECKS="$WORK/checks.tsv"; : > "$CHECKS"
CHANGED=0
for round in $(seq 1 "$ROUNDS"); do
  log "round $round"
  rm -rf "$WORK/cache" "$MIRROR" "$RESTORED"; mkdir -p "$WORK/cache" "$MIRROR"
  lb_config "r$round"
  export RESTIC_REPOSITORY="s3:$ENDPOINT/resticrepo/r$round"
  restic init -q >/dev/null
  if [ $((round % 2)) = 1 ]; then order=(lifeboat_way restic_way); else order=(restic_way lifeboat_way); fi
  for way in "${order[@]}"; do log "  first backup: $way"; "$way" "$round" first; done
  log "  replacing $CHANGED_PCT% of the objects"
  rm -rf "$WORK/change"
  CHANGED=$(python3 "$WORK/objects.py" "$WORK/change" "$OBJECTS" "$OBJECT_KIB" "$SEED" "$round" "$CHANGED_PCT")
  "${RCLONE[@]}" copy "$WORK/change" srv:media
  rm -rf "$WORK/change"
  for way in "${order[@]}"; do log "  incremental backup: $way"; "$way" "$round" incremental; done
  for way in "${order[@]}"; do log "  restore: $way"; "$way" "$round" restore; done
  if [ "$VERIFY" = 1 ]; then
    log "  comparing the restored prefixes with the bucket"
    for dst in "lbrestore/r$round" "rcloneup/r$round"; do
      if same_objects "$dst" >"$WORK/check.log" 2>&1; then ok=yes
      else ok="**no**"; tail -n 5 "$WORK/check.log" >&2; fi
      printf '%s\t%s\t%s\n' "$round" "${dst%%/*}" "$ok" >> "$CHECKS"
    done
  fi
  rm -rf "$MIRROR" "$RESTORED"
  if [ "$round" -lt "$ROUNDS" ]; then
    log "  removing round $round's repositories and restored prefixes from the server"
    for p in "lbrepo/r$round" "resticrepo/r$round" "lbrestore/r$round" "rcloneup/r$round"; do remove_prefix "$p"; done
  fi
done

# series STEPS COLUMN: per round (in order), the sum of COLUMN (3 wall, 4 own CPU,
# 5 server CPU) over STEPS ("a+b"), one a line.
series() {
  awk -F'\t' -v steps="$1" -v c="$2" '
    BEGIN { n = split(steps, s, "+"); for (i = 1; i <= n; i++) want[s[i]] = 1 }
    ($2 in want) { if (!($1 in v)) order[++k] = $1; v[$1] += $c }
    END { for (i = 1; i <= k; i++) printf "%.2f\n", v[order[i]] }' "$TSV"
}
med() { series "$1" "$2" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
every() { series "$1" "$2" | paste -sd, - | sed 's/,/, /g'; }
verdict() {  # SPEEDUP TARGET
  awk -v r="$1" -v t="$2" 'BEGIN { if (r == "-") print "—"; else if (r >= t) print "met";
    else printf "**not met** (%.0f%% short)\n", (1 - r / t) * 100 }'
}
mbs() { awk -v b="$BUCKET_BYTES" -v s="$1" 'BEGIN { if (s > 0) printf "%.1f", b / 1048576 / s; else print "-" }'; }

echo "## Fair S3 targets — $(date -u +%Y-%m-%d) (bench/s3-fair.sh), $(machine)"
echo
echo "$([ "$SYNC" = aws ] && aws --version 2>&1 | cut -d' ' -f1 || echo "rclone $(rclone version | awk 'NR == 1 { print $2 }')"), $SERVER_TEXT; lifeboat, restic and the S3 server share the $(nproc) cores."
echo "Bucket: $OBJECTS objects of $OBJECT_KIB KiB (random bytes, $(mib "$BUCKET_BYTES") MiB). Incremental: $CHANGED objects ($CHANGED_PCT%) replaced with new bytes of the same size."
echo "$ROUNDS rounds, each with fresh repositories on the same S3 server (lifeboat \`s3://lbrepo/rN\`, restic \`s3:…/resticrepo/rN\`), fresh local caches and an empty local folder; order alternating (odd rounds lifeboat first); medians."
echo
echo "- lifeboat: \`lifeboat backup media\` (a bucket target), twice; \`lifeboat restore media --to s3://lbrestore/rN\`."
if [ "$SYNC" = aws ]; then
  echo "- the restic way: \`aws s3 sync s3://media <folder>\`, then \`restic backup <folder>\`, twice; \`restic restore latest --target <dir>\`, then \`aws s3 sync <dir>/<folder> s3://rcloneup/rN\`."
  echo "- $CMP_TEXT."
else
  echo "- the restic way: \`rclone sync srv:media <folder>\`, then \`restic backup <folder>\`, twice; \`restic restore latest --target <dir>\`, then \`rclone sync <dir>/<folder> srv:rcloneup/rN\`."
  echo "- rclone flags: \`${RCLONE[*]:1}\`; listing $([ "$RCLONE_LIST" = walk ] && echo "folder by folder, 8 folders at once (rclone's default)" || echo "flat, one page after the other (\`--fast-list\`)"); $CMP_TEXT."
fi
echo "- CPU seconds: the tool's own (user + system, children included) / the S3 server's over the same interval."
echo
echo "| run | lifeboat wall s | lifeboat CPU s (own / server) | restic way wall s ($SYNC_NAME + restic) | restic way CPU s (own / server) | speedup (restic way ÷ lifeboat) | target | met? |"
echo "| --- | ---: | --- | ---: | --- | ---: | --- | --- |"
row() {  # LABEL LB_STEP RCLONE_STEP RESTIC_STEP TARGET ORDER(rclone-first|restic-first)
  local lw rw s parts
  lw=$(med "$2" 3); rw=$(med "$3+$4" 3); s=$(ratio "$rw" "$lw")
  if [ "$6" = rclone-first ]; then parts="$(med "$3" 3) + $(med "$4" 3)"; else parts="$(med "$4" 3) + $(med "$3" 3)"; fi
  echo "| $1 | $lw | $(med "$2" 4) / $(med "$2" 5) | $rw ($parts) | $(med "$3+$4" 4) / $(med "$3+$4" 5) | ${s}× | ≥ $5× | $(verdict "$s" "$5") |"
}
row "first backup" lb_first rc_first rs_first 1.0 rclone-first
row "incremental backup ($CHANGED_PCT% changed)" lb_incr rc_incr rs_incr 2.0 rclone-first
row "restore into a new prefix (restic way: restic + $SYNC_NAME)" lb_restore rc_restore rs_restore 1.0 restic-first
echo
echo "Throughput over the whole bucket: first backup lifeboat $(mbs "$(med lb_first 3)") MB/s, the restic way $(mbs "$(med rc_first+rs_first 3)") MB/s; restore lifeboat $(mbs "$(med lb_restore 3)") MB/s, the restic way $(mbs "$(med rc_restore+rs_restore 3)") MB/s."
echo "The restic way's parts are medians of their own; its total is the median of the per-round sums. Every round:"
echo
echo "| step | wall s | own CPU s | server CPU s |"
echo "| --- | --- | --- | --- |"
for s in lb_first rc_first rs_first lb_incr rc_incr rs_incr lb_restore rs_restore rc_restore; do
  case $s in
    lb_first) label="lifeboat backup, first" ;; rc_first) label="$SYNC_NAME to disk, first" ;;
    rs_first) label="restic backup, first" ;; lb_incr) label="lifeboat backup, incremental" ;;
    rc_incr) label="$SYNC_NAME to disk, incremental" ;; rs_incr) label="restic backup, incremental" ;;
    lb_restore) label="lifeboat restore into a bucket" ;; rs_restore) label="restic restore to disk" ;;
    rc_restore) label="$SYNC_NAME into a bucket" ;;
  esac
  echo "| $label | $(every "$s" 3) | $(every "$s" 4) | $(every "$s" 5) |"
done
echo
if [ "$VERIFY" = 1 ]; then
  echo "Restored prefixes equal to the bucket ($([ "$SYNC" = rclone ] && [ "$S3_SERVER" = moto ] && echo "\`rclone check\`: names, sizes, MD5" || echo "names and sizes listed, every object read back and its MD5 compared")): lifeboat $(awk -F'\t' '$2 == "lbrestore" { printf "%s%s", s, $3; s = ", " }' "$CHECKS"); restic + $SYNC_NAME $(awk -F'\t' '$2 == "rcloneup" { printf "%s%s", s, $3; s = ", " }' "$CHECKS")."
  echo
fi

if [ "$PROFILE" = 1 ]; then
  rm -rf "$WORK/cache"; mkdir -p "$WORK/cache"
  lb_config profile
  perf_profile bucket "Profile: lifeboat's first backup of the bucket ($OBJECTS objects of $OBJECT_KIB KiB, $S3_SERVER)" \
    "$LIFEBOAT" -q -c "$WORK/profile.toml" backup media
  echo "(Only lifeboat's own process is sampled; the S3 server's CPU is not in this profile.)"
  echo
fi
