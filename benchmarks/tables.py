"""Print Markdown tables from the JSON files in benchmarks/results/."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def fmt(value) -> str:
    return "n/a" if value is None or value != value else f"{100 * value:.1f}"


def table(doc: dict) -> str:
    s = doc["settings"]
    protocol = (
        f"sparse, k = {s['k']}"
        if doc["protocol"] == "sparse"
        else f"cases, {s['labeled_cases']} labelled cases of `{s['train_split']}`"
    )
    machine = doc["machine"]
    first, count = s.get("first_volume") or 0, s.get("max_volumes")
    volumes = ""
    if count:
        volumes = f", volumes {first}-{first + count - 1}" if first else f", first {count} volumes"
    budget = (
        f"{s['max_iters']} steps"
        if s.get("max_time") is None and s.get("max_iters")
        else f"max-time {s['max_time']} s"
    )
    lines = [
        f"**{doc['dataset']}** ({protocol}; scored on `{s['split']}`{volumes}"
        + f"; {budget}; {machine['cpu_count']}-core CPU, "
        f"{machine['torch_threads']} torch thread(s), device {machine['cuda'] or 'cpu'}; "
        f"peak memory {doc['peak_rss_mb']:.0f} MiB)",
        "",
        "| method | Dice % (mean ± std over volumes) | "
        + " | ".join(doc["class_names"])
        + " | s / volume | volumes |",
        "| --- | --- | " + " | ".join("---" for _ in doc["class_names"]) + " | --- | --- |",
    ]
    for name, r in doc["results"].items():
        if not r["volumes"]:
            continue
        seconds = f"{r['seconds_per_volume']:.1f}"
        if r.get("fit_seconds"):
            seconds += f" (+ {r['fit_seconds']:.0f} s training)"
        lines.append(
            f"| {name} | {fmt(r['mean_dice'])} ± {fmt(r['std_dice'])} | "
            + " | ".join(fmt(c) for c in r["class_dice"])
            + f" | {seconds} | {len(r['volumes'])} |"
        )
    # Each method against unet, or, in a run without it, against the first method listed.
    reference = "unet" if "unet" in doc["results"] else next(iter(doc["results"]))
    lines += paired_lines(doc, reference=reference)
    if len(doc["results"]) > 2 and reference != "ssl":  # ablations: against ssl as well
        lines += paired_lines(doc, reference="ssl", skip=("unet", "interp", "interp-nn"))
    return "\n".join(lines)


def paired_lines(doc: dict, reference: str = "unet", skip: tuple[str, ...] = ()) -> list[str]:
    """Per-volume comparison of every other method (but ``skip``) with ``reference`` (same
    volumes)."""
    results = doc["results"]
    if reference not in results or not results[reference]["volumes"]:
        return []
    base = {v["name"]: v["mean_dice"] for v in results[reference]["volumes"]}
    out = []
    for name, r in results.items():
        pairs = [(v["mean_dice"], base[v["name"]]) for v in r["volumes"] if v["name"] in base]
        if name == reference or name in skip or not pairs:
            continue
        gaps = [100 * (a - b) for a, b in pairs]
        wins = sum(g > 0 for g in gaps)
        out.append(
            f"- {name} vs {reference}: {sum(gaps) / len(gaps):+.1f} points on average, "
            f"ahead on {wins} of {len(gaps)} volumes (largest loss {min(gaps):+.1f})"
        )
    return [""] + out if out else []


def labelled(name: str, doc: dict) -> str:
    """A method's name, followed by the settings file it started from when it had one
    (``bench --config``): ``ssl+sam (sam_refresh 100)``."""
    training = doc.get("settings", {}).get("training") or {}
    if not training:
        return name
    return f"{name} ({', '.join(f'{key} {value}' for key, value in training.items())})"


def merged(paths: list[Path]) -> dict:
    """One document from runs of the same benchmark (e.g. two streams run side by side): results
    in the order given, the largest peak memory. A method found in several runs (its volumes
    run in parts) becomes one result over all their volumes, summarised as the runner does."""
    docs = [json.loads(path.read_text()) for path in paths]
    first = docs[0]
    for path, doc in zip(paths[1:], docs[1:], strict=True):
        for key in ("dataset", "protocol"):
            if doc[key] != first[key]:
                raise SystemExit(f"{path.name}: {key} {doc[key]!r} differs from {first[key]!r}")
    out = dict(first)
    out["results"] = {}
    for doc in docs:
        for name, r in doc["results"].items():
            key = labelled(name, doc)
            if key in out["results"]:
                from napari_ssseg.bench.runner import MethodResult  # torch: only when needed

                volumes = out["results"][key]["volumes"] + r["volumes"]
                r = MethodResult(name, volumes).summary()
            out["results"][key] = r
    out["peak_rss_mb"] = max(doc["peak_rss_mb"] for doc in docs)
    return out


def main(argv: list[str]) -> None:
    """Print a table per JSON file of the results folder (``--dir``, default
    benchmarks/results); ``a.json+b.json`` merges the methods of two runs."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("names", nargs="*", help="result files (default: all), + merges")
    parser.add_argument("--dir", type=Path, default=RESULTS, help="results folder")
    args = parser.parse_args(argv)
    groups = [[args.dir / n for n in name.split("+")] for name in args.names] or [
        [path] for path in sorted(args.dir.glob("*.json"))
    ]
    for paths in groups:
        doc = merged(paths)
        if "protocol" not in doc:
            continue  # not a segmentation benchmark (e.g. foundation_speed.json)
        print(table(doc))
        print()


if __name__ == "__main__":
    main(sys.argv[1:])
