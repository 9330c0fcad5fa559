# Sourced by the benchmark scripts: the sparse protocol of ../shared/data/README.md on one data
# set, as the issues fix it (LA: first 10 `train` volumes, k = 5; ACDC: first 10 `val`, k = 2),
# one torch thread; SSSEG_FIRST=N scores the 10 volumes from index N instead. Sets DATA (the
# shared data folder, SSSEG_SHARED_DATA or ../shared/data) and OUT (the results folder, made
# here) unless the script set them; sourced from the repository root.
DATA=${DATA:-${SSSEG_SHARED_DATA:-../shared/data}}
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
sparse_bench() {  # sparse_bench la|acdc JSON [more bench options...]
  local set=$1 json=$2
  shift 2
  case $set in
    la) napari-ssseg bench --data "$DATA/LA" --split train --protocol sparse --k 5 \
          --max-volumes 10 --first-volume "${SSSEG_FIRST:-0}" --threads 1 --json "$json" "$@" ;;
    acdc) napari-ssseg bench --data "$DATA/ACDC" --split val --protocol sparse --k 2 \
          --max-volumes 10 --first-volume "${SSSEG_FIRST:-0}" --threads 1 --json "$json" "$@" ;;
    *) echo "unknown data set $set (la or acdc)" >&2; return 2 ;;
  esac
}

# Two methods of the sparse protocol side by side, volume by volume at the same time (one
# torch thread each, so both meet the same load), their logs TAG_a.log and TAG_b.log, then
# their paired table (tables.py pairs B with A volume by volume).
sparse_pair() {  # sparse_pair la|acdc TAG JSON_A METHODS_A JSON_B METHODS_B [bench options...]
  local set=$1 tag=$2 json_a=$3 methods_a=$4 json_b=$5 methods_b=$6
  shift 6
  sparse_bench "$set" "$OUT/$json_a" --methods "$methods_a" "$@" > "$OUT/${tag}_a.log" 2>&1 &
  local pid_a=$!
  sparse_bench "$set" "$OUT/$json_b" --methods "$methods_b" "$@" > "$OUT/${tag}_b.log" 2>&1 &
  local pid_b=$!
  keep_beside "$set" "$pid_a" "$pid_b"
  wait
  python benchmarks/tables.py "$json_a+$json_b"
}

# Waits for both streams of a pair. Work left out of a run's time (embeddings or a student
# made before the run, `+precompute`, `+prepare`) makes one stream last longer; once the
# other has ended, a third stream trains `unet` on the same set (its results thrown away)
# until the longer one ends, so that every timed run met a training stream on the other
# core, as the pair's first volumes did: beside one, a CPU step here takes about twice as
# long as alone (README, Results).
keep_beside() {  # keep_beside la|acdc PID_A PID_B
  local set=$1 pid_a=$2 pid_b=$3
  wait -n "$pid_a" "$pid_b" || true
  if kill -0 "$pid_a" 2>/dev/null || kill -0 "$pid_b" 2>/dev/null; then
    local filler_json
    filler_json=$(mktemp -u /tmp/ssseg-filler-XXXXXX.json)
    sparse_bench "$set" "$filler_json" --methods unet --max-time 120 --seed 7 > /dev/null 2>&1 &
    local filler=$!
    wait "$pid_a" "$pid_b" 2>/dev/null || true
    pkill -P "$filler" 2>/dev/null || true
    kill "$filler" 2>/dev/null || true
    wait "$filler" 2>/dev/null || true
    rm -f "$filler_json"
  fi
}

# `ssl` beside one feature part on one sparse set (SSSEG_SET: acdc, the default, or la), seed
# SSSEG_SEED (0), --max-time SSSEG_BENCH_TIME (120): METHOD with its embeddings made before the
# run, outside its time (`+precompute`), or inside it with SSSEG_EMBED=budget. Results
# SET_sparse_TAG_ssl.json and SET_sparse_TAG_NAME.json, logs SET_TAG_a/b.log; another seed's
# names end in _sN, the budget runs' in _budget. SSSEG_CONFIG: a JSON file of training
# settings both streams start from (--config; settings `ssl` does not read change only METHOD).
ssl_beside() {  # ssl_beside TAG NAME METHOD
  local tag=$1 name=$2 method=$3
  local set=${SSSEG_SET:-acdc} seed=${SSSEG_SEED:-0} time=${SSSEG_BENCH_TIME:-120}
  local suffix
  suffix=$([ "$seed" = 0 ] && echo "" || echo "_s$seed")
  case ${SSSEG_EMBED:-before} in
    before) method="$method+precompute" ;;
    budget) suffix="${suffix}_budget" ;;
    *) echo "SSSEG_EMBED must be before or budget" >&2; return 2 ;;
  esac
  sparse_pair "$set" "${set}_$tag$suffix" "${set}_sparse_${tag}_ssl$suffix.json" ssl-refine \
    "${set}_sparse_${tag}_$name$suffix.json" "$method" --max-time "$time" --seed "$seed" \
    ${SSSEG_CONFIG:+--config "$SSSEG_CONFIG"}
}

# The cases protocol on ACDC as the issues fix it: N patients of `train` fully labelled (both
# frames), the rest of `train` unlabelled, one model, scored on `val`, one torch thread.
cases_bench() {  # cases_bench N JSON [more bench options...]
  local n=$1 json=$2
  shift 2
  napari-ssseg bench --data "$DATA/ACDC" --protocol cases --labeled-cases "$n" \
    --train-split train --split val --threads 1 --json "$json" "$@"
}

# Two method lists of the cases protocol with N labelled patients side by side (one torch
# thread each), their results acdc_casesN_TAG_a.json and _b.json, logs casesN_TAG_v1_a.log
# and _b.log, then their paired table.
cases_pair() {  # cases_pair N TAG METHODS_A METHODS_B [bench options...]
  local n=$1 tag=$2 methods_a=$3 methods_b=$4
  shift 4
  local json_a="acdc_cases${n}_${tag}_a.json" json_b="acdc_cases${n}_${tag}_b.json"
  cases_bench "$n" "$OUT/$json_a" --methods "$methods_a" "$@" \
    > "$OUT/cases${n}_${tag}_v1_a.log" 2>&1 &
  cases_bench "$n" "$OUT/$json_b" --methods "$methods_b" "$@" \
    > "$OUT/cases${n}_${tag}_v1_b.log" 2>&1 &
  wait
  python benchmarks/tables.py "$json_a+$json_b"
}
