"""The benchmarks' one entry point: named suites that reproduce the tables of docs/results.md.

    python benchmarks/run.py --list
    python benchmarks/run.py SUITE [--dry-run] [--data DIR] [--seed N] [--out DIR]

A suite is a list of phases run in turn; a phase holds one or two streams run side by side
(the machine has 2 cores; every bench run has one torch thread), each stream a list of runs
in turn. Run NAME of suite SUITE writes OUT/SUITE_NAME.json (OUT/SUITE_NAME_sN.json with
--seed N) and logs to OUT/logs/; the suite then prints its tables with benchmarks/tables.py.
Once one stream of a time-bounded phase has ended, a throw-away `unet` bench keeps the other
core busy until the other stream ends, so every timed run meets the same load.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
# The protocols as the issues fix them ({data}: the data folder).
CASES = "--data {data}/ACDC --protocol cases --train-split train --split val --labeled-cases"
SETS = {
    "la": "--data {data}/LA --split train --protocol sparse --k 5 --max-volumes 10",
    "acdc": "--data {data}/ACDC --split val --protocol sparse --k 2 --max-volumes 10",
    "cases3": f"{CASES} 3",
    "cases7": f"{CASES} 7",
}
T120, T300 = "--max-time 120", "--max-time 300"
I700, I900, I1200 = "--max-iters 700", "--max-iters 900", "--max-iters 1200"
R100 = "--config benchmarks/configs/sam_refresh_100.json"  # a refresh every 100 steps, not 25
FROZEN = "--config benchmarks/configs/sam_no_lora.json"  # the decoder without adapters
PRE = "-refine+precompute"  # unrefined, embeddings made before the run and outside its time


@dataclass(frozen=True)
class Run:
    name: str
    command: str  # {python}, {data}, {json} and {seed} are filled in when it runs
    seed: int = 0
    filler: str = ""  # the throw-away bench kept beside it once the other stream ends


Phase = tuple[tuple[Run, ...], ...]  # streams side by side, each a list of runs in turn


@dataclass(frozen=True)
class Suite:
    about: str
    phases: tuple[Phase, ...]
    tables: tuple[str, ...] = ()  # tables.py groups: run names (or result files) joined by +
    data: str = "shared"  # "shared": the shared data folder; else a folder of the repository


def bench(data_set: str, name: str, methods: str, *options: str, seed: int = 0) -> Run:
    """`napari-ssseg bench` of METHODS on one data set, one torch thread."""
    base = f"napari-ssseg bench {SETS[data_set]}"
    command = f"{base} --methods {methods} {' '.join(options)} --seed {{seed}} --threads 1"
    timed = any("--max-time" in option for option in options)
    filler = f"{base} --methods unet {T120} --seed 7 --threads 1" if timed else ""
    name = f"{data_set}_{name}" if name else data_set
    return Run(name, f"{command} --json {{json}}", seed, filler)


def side(*streams: Run | tuple[Run, ...]) -> Phase:
    return tuple(s if isinstance(s, tuple) else (s,) for s in streams)


def pair(data_set: str, name: str, a: str, b: str, *options: str, seed: int = 0) -> Phase:
    """Methods A beside methods B, volume by volume at the same time (runs NAME_a, NAME_b)."""
    name = f"{name}_" if name else ""
    return side(
        bench(data_set, f"{name}a", a, *options, seed=seed),
        bench(data_set, f"{name}b", b, *options, seed=seed),
    )


# One core, the first LA volume, the dock's runner: 150 s of training, then a 60 s retrain.
CLICK = "taskset -c 0 {python} benchmarks/click_to_result.py --data {data}/LA"
CLICK += " --budget 150 --retrain 60"
FEATURES = {"distill": "+distill", "pretrain": "+pretrain", "prepare": "+prepare"}
FEATURES["distill_prepare"] = "+distill+prepare"
SUITES: dict[str, Suite] = {
    "default": Suite(
        "The default against the baselines: interp, sam-box, unet, ssl; 900 steps, LA beside ACDC",
        (side(*(bench(s, "", "interp,sam-box,unet,ssl", I900) for s in ("la", "acdc"))),),
        ("la", "acdc"),
    ),
    "time120": Suite(
        "The default in 120 s: interp, unet beside ssl (LA seed 0, ACDC seed 2); sam-box",
        (
            pair("la", "", "interp,unet", "ssl", T120),
            pair("acdc", "", "interp,unet", "ssl-refine", T120, seed=2),
            side(bench("la", "sam-box", "sam-box"), bench("acdc", "sam-box", "sam-box")),
        ),
        ("la_a+la_b+la_sam-box", "acdc_a+acdc_b+acdc_sam-box"),
    ),
    "refine": Suite(
        "refine auto on ACDC: the same ssl models (900 steps) without and with it, volumes 0-19",
        (
            pair("acdc", "", "ssl-refine", "ssl+refine", I900),
            pair("acdc", "from10", "ssl-refine", "ssl+refine", I900, "--first-volume 10"),
        ),
        ("acdc_a+acdc_b", "acdc_from10_a+acdc_from10_b"),
    ),
    "presets": Suite(
        "Foundation-model presets, first runs in 120 s: sc-sam, uncol beside full, ssl+sam",
        (
            pair("la", "", "sc-sam,uncol", "full,ssl+sam", T120),
            pair("acdc", "", "sc-sam,uncol", "full,ssl+sam", T120, seed=2),
        ),
        ("time120_la_b.json+la_a+la_b", "time120_acdc_b.json+acdc_a+acdc_b"),
    ),
    "parts": Suite(
        "The default's parts off, and the foundation teacher on, at 900 steps, unrefined",
        (
            side(
                bench("acdc", "", "ssl-refine,ssl-mean-refine,ssl-shape-refine", I900),
                bench("la", "", "ssl,ssl-mean,ssl-shape", I900),
            ),
            side(
                bench("acdc", "sam", f"ssl+sam{PRE}", I900),
                bench("la", "sam", "ssl+sam+precompute", I900),
            ),
            side(
                bench("acdc", "sam_r100", f"ssl+sam{PRE}", I900, R100),
                bench("acdc", "sam_frozen", f"ssl+sam{PRE}", I900, FROZEN),
            ),
        ),
        ("acdc+acdc_sam+acdc_sam_r100+acdc_sam_frozen", "la+la_sam"),
    ),
    "cutmix": Suite(
        "CutMix: unet beside ssl on ACDC (seed 0), ssl-cutmix beside ssl+cutmix on LA (seed 1)",
        (
            pair("acdc", "", "unet", "ssl-refine", T120),
            pair("la", "", "ssl-cutmix", "ssl+cutmix", T120, seed=1),
        ),
        ("acdc_a+acdc_b", "la_a+la_b"),
    ),
    "gate": Suite(
        "The teacher gate: ssl beside ssl-gate in 120 s, ACDC then LA",
        (
            pair("acdc", "", "ssl-refine", "ssl-gate-refine", T120),
            pair("la", "", "ssl", "ssl-gate", T120),
        ),
        ("acdc_a+acdc_b", "la_a+la_b"),
    ),
    "sam-time": Suite(
        "The foundation teacher beside ssl in 120 s, embeddings made before: ACDC; LA (5 volumes)",
        (
            pair("acdc", "", "ssl-refine", f"ssl+sam{PRE}", T120),
            pair("acdc", "r100", "ssl-refine", f"ssl+sam{PRE}", T120, R100),
            pair("la", "", "ssl", f"ssl+sam{PRE}", T120, "--max-volumes 5", seed=1),
        ),
        ("acdc_a+acdc_b", "acdc_r100_a+acdc_r100_b", "la_a+la_b"),
    ),
    "features": Suite(
        "Feature parts beside ssl in 120 s: distill, pretrain, prepare, distill+prepare",
        tuple(
            pair(s, part, "ssl-refine", f"ssl{switch}{PRE}", T120)
            for s in ("acdc", "la")
            for part, switch in FEATURES.items()
        )
        + (pair("acdc", "distill_budget", "ssl-refine", "ssl+distill-refine", T120),),
        tuple(f"{s}_{p}_a+{s}_{p}_b" for s in ("acdc", "la") for p in FEATURES)
        + ("acdc_distill_budget_a+acdc_distill_budget_b",),
    ),
    "prototype": Suite(
        "Prototype alignment beside ssl in 120 s, embeddings made before: ACDC, LA (seed 1)",
        (
            pair("acdc", "", "ssl-refine", f"ssl+prototype{PRE}", T120),
            pair("la", "", "ssl", f"ssl+prototype{PRE}", T120, seed=1),
        ),
        ("acdc_a+acdc_b", "la_a+la_b"),
    ),
    "curriculum": Suite(
        "The curriculum: ssl beside ssl+self (cases, 300 s or 1 200 steps); curriculum, unet",
        (
            pair("cases3", "", "ssl", "ssl+self", T300),
            pair("cases7", "", "ssl", "ssl+self", T300),
            pair("cases3", "steps", "ssl", "ssl+self", I1200),
            side(
                *(
                    (bench(s, "curriculum", "curriculum", T120), bench(s, "unet", "unet", T120))
                    for s in ("la", "acdc")
                )
            ),
        ),
        (
            "cases3_a+cases3_b",
            "cases7_a+cases7_b",
            "cases3_steps_a+cases3_steps_b",
            "la_unet+la_curriculum",
            "acdc_unet+acdc_curriculum",
        ),
    ),
    "strong": Suite(
        "The strong student view: unet, ssl beside ssl+strong; 4 ACDC volumes, 700 steps",
        (pair("acdc", "", "unet,ssl-refine", "ssl+strong-refine", "--max-volumes 4", I700),),
        ("acdc_a+acdc_b",),
    ),
    "cases": Suite(
        "The cases protocol: unet, ssl, full in 300 s; 3 labelled patients beside 7",
        (side(*(bench(s, "", "unet,ssl,full", T300) for s in ("cases3", "cases7"))),),
        ("cases3", "cases7"),
    ),
    "speed": Suite(
        "Click to result on LA volume 0 on one core (ssl; sc-sam prepared); LiteMedSAM's speed",
        (
            side(
                (
                    Run("la_ssl", f"{CLICK} --method ssl --json {{json}}"),
                    Run("la_sc-sam", f"{CLICK} --method sc-sam --prepare --json {{json}}"),
                    Run("litemedsam", "{python} benchmarks/foundation_speed.py --out {json}"),
                ),
            ),
        ),
    ),
    "memory": Suite(
        "Peak memory of train and predict on a synthetic 512 x 512 x 400 CT",
        (side(Run("ct", "{python} benchmarks/load_memory.py --json {json}")),),
        data="",
    ),
    "ray": Suite(
        "Ray back-end: training and folder prediction with 1 and 2 workers (needs unshare -n)",
        (side(Run("la", "{python} benchmarks/ray_scaling.py --data {data}/LA --json {json}")),),
    ),
    "gpu-cases": Suite(
        "GPU machine: ssl on the cases protocol (7 patients, 256 px, 300 s); see benchmarks/README",
        (
            side(
                (
                    Run(
                        "wheels",
                        "sh -c '{python} -m pip install -q --no-index --no-deps --no-compile "
                        "--no-cache-dir --upgrade --target /tmp/ssseg-site {data}/wheels/*.whl'",
                    ),
                    Run(
                        "cases7",
                        "env PYTHONPATH=/tmp/ssseg-site:. {python} -m napari_ssseg.cli bench "
                        f"{SETS['cases7']} --methods ssl --device cuda {T300} "
                        "--config benchmarks/configs/gpu_cases.json --seed {seed} --json {json}",
                    ),
                ),
            ),
        ),
        ("cases7",),
        data=".device",
    ),
}


def wait_beside(
    threads: list[threading.Thread],
    current: dict[int, Run],
    start_filler: Callable[[str], subprocess.Popen],
) -> None:
    """Waits for a phase's streams; once one has ended, the run still going has its filler
    beside it (if it has one) until every stream has ended."""
    filler = None
    try:
        while alive := [i for i, thread in enumerate(threads) if thread.is_alive()]:
            run = current.get(alive[0])
            if filler is None and len(alive) < len(threads) and run and run.filler:
                filler = start_filler(run.filler)
            threads[alive[0]].join(timeout=10)
    finally:  # its own session: Ctrl-C does not reach it
        if filler is not None:
            os.killpg(filler.pid, signal.SIGTERM)
            filler.wait()


def run_suite(name: str, suite: Suite, data: Path, out: Path, seed: int | None, dry: bool) -> int:
    suffix = "" if seed is None else f"_s{seed}"

    def result(run_name: str) -> str:
        return run_name if run_name.endswith(".json") else f"{name}_{run_name}{suffix}.json"

    def command(template: str, json: Path | None = None, run_seed: int = 0) -> list[str]:
        values = {"python": PYTHON, "data": short(data), "json": json and short(json)}
        values["seed"] = run_seed
        return [arg.format(**values) for arg in shlex.split(template)]

    def argv(run: Run) -> list[str]:
        return command(run.command, out / result(run.name), run.seed if seed is None else seed)

    def log(run: Run) -> Path:
        return out / "logs" / result(run.name).replace(".json", ".log")

    def short(path: Path) -> str:  # the commands run in ROOT
        return os.path.relpath(path, ROOT) if path.is_relative_to(ROOT.parent) else str(path)

    groups = [
        "+".join(f for f in map(result, group.split("+")) if dry or (out / f).is_file())
        for group in suite.tables
    ]
    tables = [PYTHON, "benchmarks/tables.py", "--dir", short(out), *filter(None, groups)]
    if dry:
        print(f"cd {shlex.quote(str(ROOT))}")
        for phase in suite.phases:
            for stream in phase:
                line = " && ".join(f"{shlex.join(argv(r))} > {short(log(r))} 2>&1" for r in stream)
                print(f"({line}) &" if len(phase) > 1 else line)
            if len(phase) > 1:
                for filler in sorted({r.filler for stream in phase for r in stream} - {""}):
                    print(f"# the other stream once one has ended: {shlex.join(command(filler))}")
                print("wait")
        if any(groups):
            print(shlex.join(tables))
        return 0

    failed: list[str] = []

    def stream_runs(index: int, stream: tuple[Run, ...], current: dict[int, Run]) -> None:
        for run in stream:
            current[index] = run
            with log(run).open("w") as handle:
                code = subprocess.call(argv(run), cwd=ROOT, stdout=handle, stderr=handle)
            if code:
                failed.append(f"{result(run.name)}: exit {code}, see {log(run)}")
                return

    def start_filler(template: str) -> subprocess.Popen:  # no --json: its results go nowhere
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        return subprocess.Popen(command(template), cwd=ROOT, start_new_session=True, **quiet)

    (out / "logs").mkdir(parents=True, exist_ok=True)
    for phase in suite.phases:
        current: dict[int, Run] = {}
        threads = [
            threading.Thread(target=stream_runs, args=(index, stream, current))
            for index, stream in enumerate(phase)
        ]
        for thread in threads:
            thread.start()
        wait_beside(threads, current, start_filler)
    for line in failed:
        print(f"run.py: {line}", file=sys.stderr)
    if any(groups):
        subprocess.call(tables, cwd=ROOT)
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("suite", nargs="?", choices=SUITES, metavar="SUITE")
    parser.add_argument("--list", action="store_true", help="list the suites")
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    data_help = "data folder (default: $SSSEG_SHARED_DATA or ../shared/data; gpu-cases: .device)"
    parser.add_argument("--data", type=Path, help=data_help)
    parser.add_argument("--seed", type=int, help="every run's seed (files end in _sN)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    if args.list or not args.suite:
        for name, suite in SUITES.items():
            print(f"{name:<11} {suite.about}")
        return 0
    suite = SUITES[args.suite]
    if args.data:
        data = args.data.resolve()
    elif suite.data == "shared":
        data = (ROOT / os.environ.get("SSSEG_SHARED_DATA", "../shared/data")).resolve()
    else:
        data = ROOT / suite.data
    if suite.data and not args.dry_run and not data.is_dir():
        error = f"run.py: no data folder {data} (give --data DIR or set SSSEG_SHARED_DATA)"
        print(error, file=sys.stderr)
        return 2
    return run_suite(args.suite, suite, data, args.out.resolve(), args.seed, args.dry_run)


if __name__ == "__main__":
    sys.exit(main())
