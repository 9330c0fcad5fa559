"""The README's co-training tables from the JSON files of ``cotrain_v2.sh`` and
``cotrain_v3.sh`` (and the engine's ``unet`` / ``ssl`` rows of ``engine_v3.sh``, the pilot of
per-class trust), one table per question, each method from the file that ran it."""

from __future__ import annotations

import json

from tables import RESULTS, table

TABLES = {
    "ACDC, first runs": [
        ("acdc_sparse_v3_unet.json", "unet"),
        ("acdc_sparse_v3_ssl.json", "ssl"),
        ("acdc_sparse_cotrain_v2_a.json", "uncol"),
        ("acdc_sparse_cotrain_v2_a.json", "full"),
        ("acdc_sparse_ablation_v1_a.json", "uncol+cap"),
    ],
    "LA, first runs": [
        ("la_sparse_v3_unet.json", "interp"),
        ("la_sparse_v3_unet.json", "unet"),
        ("la_sparse_v3_ssl.json", "ssl"),
        ("la_sparse_cotrain_v2_b.json", "uncol"),
        ("la_sparse_cotrain_v2_b.json", "sam-box"),
    ],
    "LA, first runs (cotrain_v3)": [
        ("la_sparse_v3_unet.json", "interp"),
        ("la_sparse_v3_unet.json", "unet"),
        ("la_sparse_v3_ssl.json", "ssl"),
        ("la_sparse_cotrain_v3_a.json", "sc-sam"),
        ("la_sparse_cotrain_v3_b.json", "full"),
        ("la_sparse_ablation_v1_a.json", "ssl+distill-refine+precompute"),
    ],
    "ACDC, first runs (cotrain_v3)": [
        ("acdc_sparse_v3_unet.json", "unet"),
        ("acdc_sparse_v3_ssl.json", "ssl"),
        ("acdc_sparse_cotrain_v3_b.json", "sc-sam"),
    ],
    "ACDC ablation": [
        ("acdc_sparse_v3_unet.json", "unet"),
        ("acdc_sparse_v3_ssl.json", "ssl"),
        ("acdc_sparse_ablation_v1_b.json", "ssl+distill-refine+precompute"),
        ("acdc_sparse_ablation_v1_a.json", "ssl+prototype-refine+precompute"),
        ("acdc_sparse_ablation_v1_b.json", "ssl+sam-refine+precompute"),
        ("acdc_sparse_trust_pilot.json", "ssl+sam+trust-refine+precompute"),
    ],
}


def main() -> None:
    for title, rows in TABLES.items():
        docs = {name: json.loads((RESULTS / name).read_text()) for name, _ in rows}
        doc = dict(docs[rows[0][0]])
        doc["results"] = {method: docs[name]["results"][method] for name, method in rows}
        doc["peak_rss_mb"] = max(docs[name]["peak_rss_mb"] for name, _ in rows)
        print(f"<!-- {title} -->")
        print(table(doc))
        print()


if __name__ == "__main__":
    main()
