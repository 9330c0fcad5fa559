#!/usr/bin/env bash
# refine auto with its area guard (refine_min_area 0.8, off by default since; the settings
# file benchmarks/refine_min_area.json turns it on): only the refined stream, on ACDC
# `val` volumes 0-19 as 5-volume parts, two one-thread streams (900 steps, seed 0: the same
# ssl models as refine_v4.sh, whose unrefined results acdc_sparse_refine4[_from10]_off.json
# it is compared with); results acdc_sparse_refine5_fromN_auto.json, N = 0, 5, 10, 15.
set -euo pipefail
cd "$(dirname "$0")/.."
source benchmarks/sparse_sets.sh
part() {  # part FIRST
  SSSEG_FIRST=$1 sparse_bench acdc "$OUT/acdc_sparse_refine5_from$1_auto.json" \
    --methods ssl+refine --max-iters 900 --max-volumes 5 --config benchmarks/refine_min_area.json > "$OUT/sparse_refine5_from$1_auto.log" 2>&1
}
(part 0; part 10) & (part 5; part 15) & wait
python - <<'PY'
import json
from pathlib import Path

out = Path("benchmarks/results")


def dice(files, method):
    return {
        v["name"]: v["mean_dice"]
        for f in files
        for v in json.loads((out / f).read_text())["results"][method]["volumes"]
    }


for first, off in ((0, "acdc_sparse_refine4_off.json"), (10, "acdc_sparse_refine4_from10_off.json")):
    unrefined = dice([off], "ssl")
    refined = dice([f"acdc_sparse_refine5_from{n}_auto.json" for n in (first, first + 5)], "ssl+refine")
    gaps = [refined[n] - unrefined[n] for n in unrefined]
    print(
        f"volumes {first}-{first + 9}: ssl {100 * sum(unrefined.values()) / 10:.1f}, refined "
        f"{100 * sum(refined[n] for n in unrefined) / 10:.1f}: {100 * sum(gaps) / 10:+.2f}, "
        f"ahead {sum(g > 0 for g in gaps)}, behind {sum(g < 0 for g in gaps)}"
    )
PY
