"""Mutation testing of the code that produces the numbers users act on.

    python3 benchmarks/mutation.py                      # every target of benchmarks/mutation.toml
    python3 benchmarks/mutation.py --target footprint   # one target (repeatable)
    python3 benchmarks/mutation.py --list               # the mutants, without running anything
    python3 benchmarks/mutation.py --markdown           # the last results (reports/mutation/*.json) as Markdown
    python3 benchmarks/mutation.py --jobs 2             # two mutants at a time (the tests mostly sleep)
    python3 benchmarks/mutation.py --target energy --survivors   # after adding tests: only last run's survivors
    python3 benchmarks/mutation.py --target grid --only "world_average"   # mutants whose key contains this

Each target of ``benchmarks/mutation.toml`` names a module, optionally some of its functions, and the
test files that check it. For each mutant (one small change: ``<`` to ``<=``, ``*`` to ``/``, a number
times 1.1, ``and`` to ``or``, a condition negated, a call deleted...) the module is rewritten in a
scratch copy of the repository and the target's tests run there (``pytest -x``, the test files in
the order given: put the fast, sharp ones first). A mutant is *killed* when they fail (or time out),
*survived* when they pass. Mutants listed under ``equivalent`` in the configuration, with the reason
they cannot change what a user sees, are reported apart and left out of the score.

The working tree is never modified. Results go to ``reports/mutation/<target>.json`` and one line per
mutant is printed; the score is ``killed / (mutants - equivalent)``.

Why a script and not mutmut or cosmic-ray: the pytest plugin's budget code runs only inside pytester
subprocesses, which mutmut 3's in-process test-to-function map does not see; cosmic-ray mutates whole
modules in place, and these targets are single functions of larger modules (the budget check of the
Session, the store's status logic). This script mutates a function's AST, writes the module to a
scratch copy, and runs real test files, subprocesses included, against it.
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

ROOT = Path(__file__).resolve().parent.parent
CONFIG = Path(__file__).with_suffix(".toml")
IGNORE = shutil.ignore_patterns(".git", "__pycache__", "*.egg-info", "build", "dist", ".mypy_cache", ".ruff_cache",
                                ".pytest_cache", "reports", "mutants", "*.db", "*.db-wal", "*.db-shm")

BINOP_SWAP: dict[type, type] = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult,
                                ast.FloorDiv: ast.Div, ast.Mod: ast.FloorDiv, ast.Pow: ast.Mult}
CMP_SWAP: dict[type, type] = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
                              ast.NotEq: ast.Eq, ast.Is: ast.IsNot, ast.IsNot: ast.Is, ast.In: ast.NotIn,
                              ast.NotIn: ast.In}
BOOL_SWAP: dict[type, type] = {ast.And: ast.Or, ast.Or: ast.And}


@dataclass
class Site:
    """One place a mutation can be made: ``apply(tree_copy)`` makes it in a fresh tree."""

    key: str  # stable name: "<function> | <before> -> <after>" (+ " #n" when repeated)
    function: str
    line: int
    operator: str
    before: str
    after: str


@dataclass
class Outcome:
    key: str
    function: str
    line: int
    operator: str
    before: str
    after: str
    status: str  # killed, timeout, survived, equivalent (survived and listed as such), error
    seconds: float
    detail: str = ""
    why: str = ""


@dataclass
class Target:
    name: str
    file: str
    tests: list[str]
    functions: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)  # more pytest arguments (-k ...)
    equivalent: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------- sites

def _functions(tree: ast.Module, wanted: list[str]) -> Iterator[tuple[str, ast.AST]]:
    """(qualified name, node) of the module's functions and methods, limited to *wanted* when given."""
    def walk(body: list[ast.stmt], prefix: str) -> Iterator[tuple[str, ast.AST]]:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield prefix + node.name, node
            elif isinstance(node, ast.ClassDef):
                yield from walk(node.body, prefix + node.name + ".")

    found = dict(walk(tree.body, ""))
    if not wanted:
        yield from found.items()
        return
    for name in wanted:
        if name not in found:
            raise SystemExit(f"mutation.toml: no function {name!r} (known: {', '.join(sorted(found))})")
        yield name, found[name]


def _skipped_nodes(fn: ast.AST) -> set[int]:
    """ids of nodes never mutated: annotations, docstrings, f-strings and what they hold."""
    skip: set[int] = set()

    def all_of(node: ast.AST | None) -> None:
        if node is not None:
            skip.update(id(n) for n in ast.walk(node))

    for node in ast.walk(fn):
        if isinstance(node, ast.arg):
            all_of(node.annotation)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            all_of(node.returns)
        elif isinstance(node, ast.AnnAssign):
            all_of(node.annotation)
        elif isinstance(node, ast.JoinedStr):
            all_of(node)
    return skip


def _mutations(node: ast.AST, parent: ast.AST | None) -> Iterator[tuple[str, Callable[[ast.AST], ast.AST | None]]]:
    """(operator name, mutate) for one node; *mutate* changes the node in place or returns its replacement."""
    if isinstance(node, (ast.BinOp, ast.AugAssign)) and type(node.op) in BINOP_SWAP:
        new = BINOP_SWAP[type(node.op)]
        yield "binop", lambda n, new=new: setattr(n, "op", new()) or None
    elif isinstance(node, ast.Compare):
        for i, op in enumerate(node.ops):
            if type(op) in CMP_SWAP:
                new = CMP_SWAP[type(op)]

                def swap(n: Any, i: int = i, new: type = new) -> None:
                    n.ops[i] = new()

                yield "compare", swap
    elif isinstance(node, ast.BoolOp):
        new = BOOL_SWAP[type(node.op)]
        yield "boolop", lambda n, new=new: setattr(n, "op", new()) or None
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.Not)):
        yield "unary-drop", lambda n: n.operand
    elif isinstance(node, ast.Constant) and not isinstance(node.value, str):
        v = node.value
        if isinstance(v, bool):
            yield "bool", lambda n: setattr(n, "value", not n.value) or None
        elif isinstance(v, int):
            yield "number", lambda n: setattr(n, "value", n.value + 1) or None
        elif isinstance(v, float):
            yield "number", lambda n: setattr(n, "value", n.value * 1.1 if n.value else 1.0) or None
    if isinstance(node, ast.If) or isinstance(node, ast.IfExp) or isinstance(node, ast.While):
        yield "negate", lambda n: setattr(n, "test", ast.UnaryOp(op=ast.Not(), operand=n.test)) or None
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) or isinstance(node, ast.AugAssign):
        yield "delete", lambda n: ast.Pass()
    if isinstance(node, ast.Break):
        yield "break", lambda n: ast.Continue()
    if isinstance(node, ast.Continue):
        yield "continue", lambda n: ast.Break()


def _ordered(node: ast.AST) -> Iterator[tuple[ast.AST, ast.AST | None, str, int | None]]:
    """Every node under *node*, in source order, with (parent, field, index in the field's list)."""
    for fname, value in ast.iter_fields(node):
        if isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, ast.AST):
                    yield item, node, fname, i
                    yield from _ordered(item)
        elif isinstance(value, ast.AST):
            yield value, node, fname, None
            yield from _ordered(value)


def _enumerate(tree: ast.Module, lines: list[str], functions: list[str]
               ) -> Iterator[tuple[str, ast.AST, ast.AST, str, int | None, str, Callable[[ast.AST], ast.AST | None]]]:
    for qual, fn in _functions(tree, functions):
        skip = _skipped_nodes(fn)
        for node, parent, fname, idx in _ordered(fn):
            if id(node) in skip:
                continue
            line = getattr(node, "lineno", None)
            if line is not None and "pragma: no mutate" in lines[line - 1]:
                continue
            if isinstance(node, ast.Pass):
                continue
            for op, mutate in _mutations(node, parent):
                yield qual, node, parent, fname, idx, op, mutate


def _text(node: ast.AST) -> str:
    """One line of source for *node* (a compound statement: its header)."""
    if isinstance(node, (ast.If, ast.While)):
        s = ("if " if isinstance(node, ast.If) else "while ") + ast.unparse(node.test)
    elif isinstance(node, (ast.For, ast.AsyncFor)):
        s = f"for {ast.unparse(node.target)} in {ast.unparse(node.iter)}"
    elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        s = f"def {node.name}({ast.unparse(node.args)})"
    elif isinstance(node, ast.stmt) and hasattr(node, "body"):
        s = type(node).__name__.lower()
    else:
        s = ast.unparse(node)
    s = " ".join(s.split())
    return s if len(s) <= 110 else s[:107] + "..."


def sites(target: Target) -> list[Site]:
    """Every mutant of the target, with a stable key."""
    src = (ROOT / target.file).read_text(encoding="utf-8")
    lines = src.splitlines()
    out: list[Site] = []
    seen: dict[str, int] = {}
    tree = ast.parse(src)
    for qual, node, parent, fname, idx, op, mutate in _enumerate(tree, lines, target.functions):
        if isinstance(node, ast.Constant):  # a bare number says little: show it in its parent
            shown = copy.deepcopy(parent)
            child = getattr(shown, fname)[idx] if idx is not None else getattr(shown, fname)
            mutate(child)
            before, after = _text(parent), _text(shown)
        else:
            before = _text(node)
            mutated = copy.deepcopy(node)
            repl = mutate(mutated)
            after = _text(repl if repl is not None else mutated)
        key = f"{qual} | {before} -> {after}"
        seen[key] = seen.get(key, 0) + 1
        if seen[key] > 1:
            key += f" #{seen[key]}"
        out.append(Site(key, qual, getattr(node, "lineno", 0), op, before, after))
    return out


def mutated_source(target: Target, index: int) -> str:
    """The module's source with mutant number *index* (in :func:`sites` order) applied."""
    src = (ROOT / target.file).read_text(encoding="utf-8")
    tree = ast.parse(src)
    for k, (_q, node, parent, fname, idx, _op, mutate) in enumerate(_enumerate(tree, src.splitlines(),
                                                                               target.functions)):
        if k != index:
            continue
        repl = mutate(node)
        if repl is not None:
            if idx is None:
                setattr(parent, fname, repl)
            else:
                getattr(parent, fname)[idx] = repl
        ast.fix_missing_locations(tree)
        return ast.unparse(tree) + "\n"
    raise IndexError(index)


# ---------------------------------------------------------------------------------------- running

class Scratch:
    """A copy of the repository where one module at a time is replaced by a mutant."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="greentrack-mutation-"))
        self.root = self.dir / "repo"
        shutil.copytree(ROOT, self.root, ignore=IGNORE)
        self.env = dict(os.environ)
        self.env.update(PYTHONPATH=str(self.root) + os.pathsep + self.env.get("PYTHONPATH", ""),
                        PYTHONDONTWRITEBYTECODE="1", GREENTRACK_DB=str(self.dir / "mutation.db"))
        self.env.pop("PYTEST_ADDOPTS", None)
        where = subprocess.run([sys.executable, "-c", "import greentrack; print(greentrack.__file__)"],
                               env=self.env, cwd=self.root, capture_output=True, text=True).stdout.strip()
        if not where.startswith(str(self.root)):
            raise SystemExit(f"the scratch copy is not what Python imports (greentrack from {where!r})")

    def run_tests(self, tests: list[str], timeout: float) -> tuple[int | None, float, str]:
        cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
               "--no-header", "-W", "ignore", *tests]
        t = time.perf_counter()
        try:
            p = subprocess.run(cmd, cwd=self.root, env=self.env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return None, time.perf_counter() - t, "timeout"
        lines = [ln for ln in (p.stdout + p.stderr).splitlines() if ln.strip()]
        first_fail = next((ln for ln in lines if ln.startswith("FAILED ") or ln.startswith("ERROR ")), "")
        return p.returncode, time.perf_counter() - t, first_fail or (lines[-1] if lines else "")

    def put(self, rel: str, text: str) -> None:
        (self.root / rel).write_text(text, encoding="utf-8")

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def run_target(target: Target, pool: list[Scratch], only: str | None, out_dir: Path | None,
               survivors: bool = False, recheck: str | None = None) -> list[Outcome]:
    all_sites = sites(target)
    previous: dict[str, dict[str, Any]] = {}
    prev_file = (out_dir / f"{target.name}.json") if out_dir is not None else None
    if survivors:
        if prev_file is None or not prev_file.exists():
            raise SystemExit(f"{target.name}: --survivors needs an earlier run's {prev_file}")
        previous = {m["key"]: m for m in json.loads(prev_file.read_text(encoding="utf-8"))["mutants"]}
    stale = sorted(set(target.equivalent) - {s.key for s in all_sites})
    for key in stale:
        print(f"  note: equivalent mutant listed in mutation.toml no longer exists: {key}", flush=True)
    original = (ROOT / target.file).read_text(encoding="utf-8")
    tests = target.tests + target.args
    for scratch in pool:
        scratch.put(target.file, original)
    code, base_s, detail = pool[0].run_tests(tests, timeout=1800)
    if code != 0:
        raise SystemExit(f"{target.name}: the tests fail without any mutation: {detail}")
    timeout = 2.0 * base_s + 15.0
    print(f"== {target.name}: {target.file}{' (' + ', '.join(target.functions) + ')' if target.functions else ''}; "
          f"{len(all_sites)} mutants; tests {' '.join(tests)} take {base_s:.1f} s", flush=True)
    todo = [(i, site) for i, site in enumerate(all_sites) if not only or only in site.key]
    if survivors:  # what survived last time, is new, or is listed as equivalent; the rest keeps its outcome
        todo = [(i, site) for i, site in todo if site.key not in previous or site.key in target.equivalent
                or previous[site.key]["status"] in ("survived", "equivalent", "error")
                or (recheck and recheck in previous[site.key]["detail"])]
    free: queue.Queue[Scratch] = queue.Queue()
    for scratch in pool:
        free.put(scratch)

    def one(i: int, site: Site) -> Outcome:
        scratch = free.get()
        try:
            scratch.put(target.file, mutated_source(target, i))
            code, secs, detail = scratch.run_tests(tests, timeout)
        finally:
            scratch.put(target.file, original)
            free.put(scratch)
        if code is None:
            status = "timeout"
        elif code == 0:
            status = "equivalent" if site.key in target.equivalent else "survived"
        elif code in (1, 2, 3, 4):  # tests failed, interrupted, internal error, usage error: detected
            status = "killed"
        else:
            status, detail = "error", f"pytest exit {code}: {detail}"
        o = Outcome(site.key, site.function, site.line, site.operator, site.before, site.after, status, secs,
                    detail if status != "survived" else "", target.equivalent.get(site.key, ""))
        mark = {"killed": "killed  ", "timeout": "timeout ", "survived": "SURVIVED", "equivalent": "equiv.  ",
                "error": "error   "}[status]
        print(f"  {mark} L{site.line:<4} {site.key}  ({secs:.1f} s)", flush=True)
        return o

    with ThreadPoolExecutor(max_workers=len(pool)) as ex:
        fresh = {o.key: o for o in ex.map(lambda a: one(*a), todo)}
    if survivors:
        results = [fresh.get(s.key) or Outcome(**previous[s.key]) for s in all_sites]
    else:
        results = [fresh[s.key] for _, s in todo]
    summary = score(results)
    print(f"== {target.name}: {summary['line']}", flush=True)
    if out_dir is not None and not only:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / f"{target.name}.json").write_text(json.dumps({
            "target": asdict(target), "baseline_s": round(base_s, 1), "summary": summary,
            "mutants": [asdict(o) for o in results]}, indent=1) + "\n", encoding="utf-8")
    return results


def score(results: list[Outcome]) -> dict[str, Any]:
    n = {s: sum(1 for o in results if o.status == s) for s in ("killed", "timeout", "survived", "equivalent", "error")}
    counted = len(results) - n["equivalent"]
    killed = n["killed"] + n["timeout"]
    pct = 100.0 * killed / counted if counted else 100.0
    line = (f"{killed}/{counted} killed = {pct:.1f} % ({n['killed']} failed, {n['timeout']} timed out, "
            f"{n['survived']} survived, {n['equivalent']} equivalent, {n['error']} errors)")
    return dict(n, mutants=len(results), counted=counted, score_pct=round(pct, 2), line=line)


def markdown(targets: list[Target], out_dir: Path) -> str:
    """The last results of *targets* (``<out_dir>/<target>.json``) as Markdown: scores, then survivors."""
    lines = ["| target | module (functions) | mutants | killed | timed out | survived | equivalent | score |",
             "|---|---|---|---|---|---|---|---|"]
    details: list[str] = []
    tot = {"mutants": 0, "killed": 0, "timeout": 0, "survived": 0, "equivalent": 0, "counted": 0}
    for t in targets:
        f = out_dir / f"{t.name}.json"
        if not f.exists():
            lines.append(f"| {t.name} | `{t.file}` | not run | | | | | |")
            continue
        data = json.loads(f.read_text(encoding="utf-8"))
        sm = data["summary"]
        for k in tot:
            tot[k] += sm[k]
        funcs = f" ({', '.join(t.functions)})" if t.functions else ""
        lines.append(f"| {t.name} | `{t.file}`{funcs} | {sm['mutants']} | {sm['killed']} | {sm['timeout']} | "
                     f"{sm['survived']} | {sm['equivalent']} | {sm['score_pct']:.1f} % |")
        left = [m for m in data["mutants"] if m["status"] in ("survived", "equivalent", "error")]
        if left:
            details.append(f"\n### {t.name}\n")
            for m in left:
                why = m["why"] or "**not killed, not explained**"
                details.append(f"- L{m['line']} `{m['key']}` ({m['status']}): {why}")
    pct = 100.0 * (tot["killed"] + tot["timeout"]) / tot["counted"] if tot["counted"] else 100.0
    lines.append(f"| **all** | | {tot['mutants']} | {tot['killed']} | {tot['timeout']} | {tot['survived']} | "
                 f"{tot['equivalent']} | **{pct:.1f} %** |")
    return "\n".join(lines + details) + "\n"


def load_targets(path: Path) -> list[Target]:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    out = []
    for t in data.get("target", []):
        eq = {e["mutant"]: e["why"] for e in t.get("equivalent", [])}
        out.append(Target(t["name"], t["file"], list(t["tests"]), list(t.get("functions", [])),
                          list(t.get("args", [])), eq))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=CONFIG)
    ap.add_argument("--target", action="append", help="a target's name (repeatable; default: all)")
    ap.add_argument("--only", default=None, help="only the mutants whose key contains this text")
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    ap.add_argument("--markdown", action="store_true", help="print the last results as Markdown and exit")
    ap.add_argument("--survivors", action="store_true",
                    help="test again only the mutants that survived the last run (reports/mutation/<target>.json)")
    ap.add_argument("--recheck", default=None, metavar="TEST",
                    help="with the survivors, test again the mutants last killed by this test (one that can fail "
                         "under load: the kill may not be the mutant's)")
    ap.add_argument("--jobs", type=int, default=1, help="mutants tested at once, each in its own copy (default 1)")
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "mutation",
                    help="folder for <target>.json (default reports/mutation)")
    args = ap.parse_args()
    targets = load_targets(args.config)
    if args.target:
        unknown = set(args.target) - {t.name for t in targets}
        if unknown:
            print(f"unknown target(s) {', '.join(sorted(unknown))}; known: {', '.join(t.name for t in targets)}",
                  file=sys.stderr)
            return 2
        targets = [t for t in targets if t.name in args.target]
    if args.markdown:
        print(markdown(targets, args.out), end="")
        return 0
    if args.list:
        for t in targets:
            ss = sites(t)
            print(f"== {t.name}: {t.file}: {len(ss)} mutants")
            for s in ss:
                if not args.only or args.only in s.key:
                    print(f"  L{s.line:<4} {s.operator:<10} {s.key}")
        return 0
    pool = [Scratch() for _ in range(max(1, args.jobs))]
    totals: list[Outcome] = []
    try:
        for t in targets:
            totals += run_target(t, pool, args.only, args.out, args.survivors or bool(args.recheck), args.recheck)
    finally:
        for scratch in pool:
            scratch.close()
    if len(targets) > 1:
        print(f"== all: {score(totals)['line']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
