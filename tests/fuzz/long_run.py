"""Long fuzz runs of cryoal's readers, outside pytest; prints and writes a JSON summary.

Usage (from the repository root)::

    # coverage-guided, with atheris (pip install atheris, or the "fuzz" extra)
    timeout 3600 python tests/fuzz/long_run.py --reader mrc --engine atheris --inputs 10000
    # the same mutation programs from a seeded RNG (no atheris needed)
    timeout 3600 python tests/fuzz/long_run.py --reader all --engine random --inputs 10000

Each input is a file made by the reader's mutation program in ``_fuzzlib``; it must read
or raise a :class:`cryoal.errors.CryoalError`. Every other exception is counted by type
and the first inputs of each type are saved to ``--save-dir`` (replay one with
``--replay FILE``). An input running past ``--limit-s`` seconds counts as a hang (SIGALRM;
atheris also passes ``-timeout`` to libFuzzer). Peak memory is the process's maximum
resident set size; ``--rss-limit-mb`` caps the address space so that an allocation driven
by a header's claimed size fails (and is counted) instead of swapping.
"""

from __future__ import annotations

import argparse
import collections
import json
import resource
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _fuzzlib as fz


class Stats:
    """Counts per outcome for one reader."""

    def __init__(self, reader: str, save_dir: Path | None, keep: int = 5) -> None:
        self.reader = reader
        self.counts: collections.Counter[str] = collections.Counter()
        self.untyped: collections.Counter[str] = collections.Counter()
        self.examples: dict[str, str] = {}
        self.slowest = 0.0
        self.save_dir = save_dir
        self.keep = keep
        self.t0 = time.perf_counter()
        self.c0 = time.process_time()

    def add(self, outcome: fz.Outcome, name: str, data: bytes) -> None:
        example = ""
        if outcome.error is not None:
            tb = traceback.extract_tb(outcome.error.__traceback__)
            where = f"{tb[-1].filename}:{tb[-1].lineno}" if tb else "?"
            example = f"{outcome.error!r}"[:300] + f" at {where}"
        self.record(outcome.status, outcome.label, outcome.seconds, example, lambda: (name, data))

    def record(
        self,
        status: str,
        label: str,
        seconds: float,
        example: str,
        make: Any,
    ) -> None:
        self.counts[status] += 1
        self.slowest = max(self.slowest, seconds)
        if status not in ("untyped", "hang"):
            return
        label = label if status == "untyped" else "hang"
        self.untyped[label] += 1
        if self.untyped[label] <= self.keep and self.save_dir is not None:
            name, data = make()
            self.save_dir.mkdir(parents=True, exist_ok=True)
            stem = f"{self.reader}-{label}-{self.untyped[label]}".replace("/", "_").replace(
                " ", "_"
            )
            (self.save_dir / f"{stem}--{name}").write_bytes(data)
        if label not in self.examples and example:
            self.examples[label] = example

    def summary(self) -> dict[str, Any]:
        wall = time.perf_counter() - self.t0
        cpu = time.process_time() - self.c0
        n = sum(self.counts.values())
        return {
            "reader": self.reader,
            "inputs": n,
            "ok": self.counts["ok"],
            "typed": self.counts["typed"],
            "untyped": dict(self.untyped),
            "untyped_total": sum(v for k, v in self.untyped.items() if k != "hang"),
            "hangs": self.untyped.get("hang", 0),
            "examples": self.examples,
            "slowest_input_s": round(self.slowest, 3),
            "wall_s": round(wall, 1),
            "cpu_s": round(cpu, 1),
            "inputs_per_s_wall": round(n / wall, 1) if wall else None,
            "inputs_per_cpu_s": round(n / cpu, 1) if cpu else None,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }


def _limit_memory(mb: int | None) -> None:
    if not mb:
        return
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (mb * 2**20, hard))


def _child(reader: fz.Reader, args: argparse.Namespace, start: int, conn: Any) -> None:
    """Run inputs ``start..`` and send one ``(i, status, label, seconds, repr)`` per input."""
    _limit_memory(args.rss_limit_mb)
    fz.warm_up()
    with tempfile.TemporaryDirectory(prefix="cryoal-fuzz-") as tmp:
        folder = Path(tmp)
        for i in range(start, args.inputs):
            conn.send(("start", i))
            name, data = _make(reader, args, i)
            path = fz.write_input(folder, name, data)
            outcome = fz.run_input(reader, path, limit_s=args.limit_s)
            path.unlink(missing_ok=True)
            example = ""
            if outcome.status in ("untyped", "hang") and outcome.error is not None:
                tb = traceback.extract_tb(outcome.error.__traceback__)
                where = f"{tb[-1].filename}:{tb[-1].lineno}" if tb else "?"
                example = f"{outcome.error!r}"[:300] + f" at {where}"
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            conn.send(("done", i, outcome.status, outcome.label, outcome.seconds, example, rss))
    conn.close()


def _make(reader: fz.Reader, args: argparse.Namespace, i: int) -> tuple[str, bytes]:
    """Input ``i`` of this run (deterministic: the parent re-makes it to save it)."""
    return reader.make(fz.RandomDraw(args.seed * 1_000_003 + i))


def run_random(reader: fz.Reader, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """Inputs in a child process; a child stuck in C code (or killed) costs one input."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    stats = Stats(reader.name, args.save_dir)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak_kb = 0
    start = 0
    while start < args.inputs:
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_child, args=(reader, args, start, child), daemon=True)
        proc.start()
        child.close()
        current = start
        while True:
            if not parent.poll(args.limit_s * 3):  # stuck where SIGALRM cannot reach
                proc.kill()
                status, label = "hang", "hang"
                break
            try:
                msg = parent.recv()
            except EOFError:  # the child died (segfault, OOM kill) or finished
                proc.join()
                status, label = "untyped", f"crash (exit {proc.exitcode})"
                break
            if msg[0] == "start":
                current = msg[1]
                continue
            _, i, st, lab, secs, example, rss = msg
            peak_kb = max(peak_kb, rss)
            stats.record(st, lab, secs, example, lambda i=i: _make(reader, args, i))
            current = i + 1
            if args.progress and (i + 1) % args.progress == 0:
                print(f"{reader.name}: {i + 1} inputs {dict(stats.untyped)}", file=sys.stderr)
        proc.join()
        if current >= args.inputs:
            break
        stats.record(status, label, args.limit_s * 3, "", lambda i=current: _make(reader, args, i))
        start = current + 1
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = stats.summary()
    out["cpu_s"] = round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 1)
    out["inputs_per_cpu_s"] = round(out["inputs"] / out["cpu_s"], 1) if out["cpu_s"] else None
    out["peak_rss_mb"] = round(peak_kb / 1024, 1)  # of the child processes of this reader
    return out


def run_atheris(reader: fz.Reader, args: argparse.Namespace, folder: Path) -> None:
    import atheris

    stats = Stats(reader.name, args.save_dir)

    def one(raw: bytes) -> None:
        name, data = reader.make(fz.AtherisDraw(atheris.FuzzedDataProvider(raw)))
        path = fz.write_input(folder, name, data)
        stats.add(fz.run_input(reader, path, limit_s=args.limit_s), name, data)
        path.unlink(missing_ok=True)

    def report() -> None:
        _emit([stats.summary()], args)

    import atexit

    atexit.register(report)
    libfuzzer = [
        sys.argv[0],
        f"-atheris_runs={args.inputs + 1}",
        f"-timeout={int(args.limit_s) + 5}",
        f"-seed={args.seed + 1}",
        f"-max_len={args.max_len}",
        *args.libfuzzer,
    ]
    if not args.no_instrument:  # coverage of the readers' bytecode guides libFuzzer
        _instrument(atheris, args.instrument)
    atheris.Setup(libfuzzer, one)
    stats.t0, stats.c0 = time.perf_counter(), time.process_time()  # not the instrumentation
    atheris.Fuzz()


def _instrument(atheris: Any, prefixes: list[str]) -> None:
    """Instrument the functions of loaded modules named ``prefix`` or ``prefix.*``.

    ``atheris.instrument_all()`` would take minutes on torch's 50,000 functions; the
    readers' own code (cryoal, the CLI, mrcfile, starfile, h5py's Python layer) is what
    the coverage should follow.
    """
    import gc
    import types
    import warnings

    wanted = tuple(prefixes)

    def ours(obj: Any) -> bool:
        mod = getattr(obj, "__module__", None) or ""
        return any(mod == p or mod.startswith(p + ".") for p in wanted)

    with warnings.catch_warnings():  # deprecated module attributes warn when looked at
        warnings.simplefilter("ignore")
        funcs = [o for o in gc.get_objects() if isinstance(o, types.FunctionType) and ours(o)]
    done = 0
    for func in funcs:
        try:
            atheris.instrument_func(func)
            done += 1
        except Exception:  # some functions (generators of C extensions) cannot be patched
            pass
    print(f"instrumented {done} of {len(funcs)} functions in {', '.join(wanted)}", file=sys.stderr)


def _emit(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    text = json.dumps(results, indent=2)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


def replay(reader: fz.Reader, file: Path) -> int:
    name = file.name.split("--", 1)[-1]
    with tempfile.TemporaryDirectory() as tmp:
        path = fz.write_input(Path(tmp), name, file.read_bytes())
        outcome = fz.run_input(reader, path)
    print(outcome.status, outcome.label, repr(outcome.error))
    if outcome.error is not None and outcome.status == "untyped":
        traceback.print_exception(outcome.error)
    return 0 if outcome.status in ("ok", "typed") else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--reader",
        default="all",
        help=f"all, or comma-separated names: {', '.join(fz.READERS)}",
    )
    parser.add_argument("--engine", default="random", choices=["random", "atheris"])
    parser.add_argument("--inputs", type=int, default=10_000, help="inputs per reader")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit-s", type=float, default=10.0, help="per-input time limit")
    parser.add_argument("--rss-limit-mb", type=int, default=None, help="address-space cap")
    parser.add_argument("--max-len", type=int, default=4096, help="atheris: max input bytes")
    parser.add_argument("--save-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None, help="JSON summary file")
    parser.add_argument("--progress", type=int, default=0, help="log every N inputs")
    parser.add_argument(
        "--no-instrument", action="store_true", help="atheris: no coverage instrumentation"
    )
    parser.add_argument(
        "--instrument",
        nargs="+",
        default=["cryoal", "cli", "mrcfile", "starfile", "h5py", "copick", "dynamotable"],
        help="atheris: packages whose functions are instrumented",
    )
    parser.add_argument("--replay", type=Path, default=None, help="run one saved input")
    parser.add_argument("libfuzzer", nargs="*", help="extra libFuzzer flags (after --)")
    args = parser.parse_args(argv)
    import logging

    import torch

    torch.set_num_threads(1)
    logging.disable(logging.WARNING)  # the readers log oddities of every fuzzed header
    names = list(fz.READERS) if args.reader == "all" else args.reader.split(",")
    unknown = [n for n in names if n not in fz.READERS]
    if unknown:
        parser.error(f"unknown reader(s) {', '.join(unknown)}; choose from {', '.join(fz.READERS)}")
    fz.warm_up()
    if args.replay is not None:
        return replay(fz.READERS[names[0]], args.replay)
    with tempfile.TemporaryDirectory(prefix="cryoal-fuzz-") as tmp:
        folder = Path(tmp)
        if args.engine == "atheris":
            _limit_memory(args.rss_limit_mb)
            if len(names) != 1:
                parser.error("--engine atheris runs one --reader at a time")
            run_atheris(fz.READERS[names[0]], args, folder)
            return 0
        results = []
        for name in names:
            results.append(run_random(fz.READERS[name], args, folder))
            if args.out is not None:  # after each reader: a cut-short run keeps what it did
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps(results, indent=2) + "\n")
        _emit(results, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
