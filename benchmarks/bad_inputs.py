"""Feed searcher bad inputs and show what each one gives, and that nothing stored was lost.

In a temporary folder the script first stores something worth losing: a small synthetic
search (a copy of ``studies/h100-e64-n1408.toml`` with ``batch_sizes = [16, 64]`` and
``trials_per_m = 6``), its exported vLLM file, a small synthetic grid and its replay
dataset. Then it runs every bad input as a real ``searcher`` process (malformed study
and space files, unknown keys and names, wrong types and values, bad command-line
options, unreachable or wrong storages, another GPU's data, refused and interrupted
exports, malformed vLLM files and datasets), each against that same storage. After each
one it compares a digest of every stored study (its attributes and every trial's number,
state, values, params and user attributes) and the bytes of the files it protects with
what they were before the cases, and puts them back if a case changed them, so that every
case starts from the same state.

It prints a Markdown table: what was wrong, the command, the exit code, the message (the
red ``searcher <command>: ...`` line of stderr; a traceback's last line is marked as
such) and whether the stored data was kept. The exit code is 0 when every case ended
non-zero with a one-line message naming what it should (and no traceback) and nothing
stored changed, else 1; the offending cases are listed under the table. Runs on a CPU in
about three minutes (two cores); no GPU is used. As root, which ignores permission bits,
the read-only-folder cases run under ``setpriv`` without CAP_DAC_OVERRIDE, or say that
they could not be tested.

    python benchmarks/bad_inputs.py --out benchmarks/results/bad-inputs.md
    python benchmarks/bad_inputs.py --keep    # keep the temporary folder to look at
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

if TYPE_CHECKING:  # pragma: no cover - typing only
    from optuna.storages import RDBStorage

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_STUDY = ROOT / "studies" / "h100-e64-n1408.toml"
BAD_SPACES = ROOT / "tests" / "data" / "spaces"
H200_DATASET = ROOT / "benchmarks" / "data" / "grid-h200-e64-n1408-vllm432.csv"
DSV3 = str(ROOT / "tests" / "data" / "models" / "deepseek-v3" / "config.json")
QWEN3 = ROOT / "tests" / "data" / "models" / "qwen3-30b-a3b" / "config.json"

#: The storage every case is pointed at unless it names another (relative to the folder).
DB_URL = "sqlite:///s.db"
EXPORT_NAME = "E=64,N=1408,device_name=NVIDIA_H100_80GB_HBM3.json"
#: Seconds a case may run before it is killed and reported as not finishing.
CASE_TIMEOUT_S = 60
MESSAGE_CHARS = 160
#: Run a child without the root capabilities that ignore permission bits.
DROP_ROOT_OVERRIDE = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]

TINY_SPACE = """\
# 8 configs, so that a whole grid takes a second.
schema = 1
[params]
BLOCK_SIZE_M = [16, 32]
BLOCK_SIZE_N = [64, 128]
BLOCK_SIZE_K = [64]
GROUP_SIZE_M = [1]
num_warps = [4]
num_stages = [3, 4]
"""

NO_CONFIG_SPACE = TINY_SPACE.replace("[params]", "[constraints]\nnever = \"M < 0\"\n[params]")

MALFORMED_DATASET = """\
# vllm_name: NVIDIA_H100_80GB_HBM3
M,BLOCK_SIZE_M,BLOCK_SIZE_N,BLOCK_SIZE_K,GROUP_SIZE_M,num_warps,num_stages,status,median_us
16,16,64,64,1,4,3,ok,40.1
16,sixteen,64,64,1,4,4,ok,39.0
"""


# -- the workspace: what is stored before the cases -----------------------------------

@dataclass
class Workspace:
    """The temporary folder, its stored data and the files the cases protect."""

    root: Path
    study_text: str
    #: Files whose bytes must survive every case (relative to root).
    protected: list[str] = field(default_factory=list)
    #: Command prefix that makes a 0o555 folder unwritable here, or None if nothing does.
    read_only_prefix: list[str] | None = None
    read_only_note: str = ""

    @property
    def db(self) -> Path:
        return self.root / "s.db"

    @property
    def backup(self) -> Path:
        return self.root / "s.db.bak"

    def write(self, name: str, text: str | bytes) -> str:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
        return name

    def study(self, name: str, old: str | None = None, new: str = "") -> str:
        """Write a variant of the small study (``old`` replaced by ``new``) as inputs/NAME."""
        text = self.study_text
        if old is not None:
            if old not in text:
                raise SystemExit(f"bad_inputs.py: {old!r} is not in the study; update the case")
            text = text.replace(old, new, 1)
        return self.write(f"inputs/{name}.toml", text)


def searcher_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "searcher", *args]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def setup_step(ws: Workspace, *args: str) -> None:
    proc = subprocess.run(searcher_argv(*args), cwd=ws.root, env=child_env(),
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise SystemExit(f"bad_inputs.py: setup step `searcher {' '.join(args)}` failed "
                         f"({proc.returncode}):\n{proc.stderr}")


def prepare(root: Path) -> Workspace:
    """Store a small search, its export, a tiny grid and its dataset under ``root``."""
    shipped = SHIPPED_STUDY.read_text()
    if "trials_per_m = 40" not in shipped:
        raise SystemExit(f"bad_inputs.py: {SHIPPED_STUDY} changed; update prepare()")
    ws = Workspace(root, shipped.replace("trials_per_m = 40",
                                         "trials_per_m = 6\nbatch_sizes = [16, 64]"))
    ws.study("small")
    ws.write("inputs/tiny-space.toml", TINY_SPACE)
    ws.study("tiny", 'space = "vllm-432"', 'space = "tiny-space.toml"')
    (root / "export").mkdir()

    setup_step(ws, "run", "--study", "inputs/small.toml", "--synthetic", "--storage", DB_URL,
               "--no-live")
    setup_step(ws, "export", "--study", "inputs/small.toml", "--storage", DB_URL,
               "--out", "export", "--allow-unmeasured")
    setup_step(ws, "grid", "--study", "inputs/tiny.toml", "--synthetic", "--storage", DB_URL,
               "--batch-sizes", "16")
    setup_step(ws, "grid", "--study", "inputs/tiny.toml", "--storage", DB_URL, "--no-run",
               "--batch-sizes", "16", "--dataset", "export/tiny-grid.csv")
    # A user's own dataset, and a broken vLLM file where --merge would write.
    head = H200_DATASET.read_text().splitlines(keepends=True)[:40]
    ws.write("data/my-dataset.csv", "".join(head))
    ws.write(f"other/{EXPORT_NAME}", '{"triton_version": "3.6.0", "64": {"BLOCK_SIZE_M": 16,\n')
    ws.protected = [f"export/{EXPORT_NAME}", "export/tiny-grid.csv", "data/my-dataset.csv",
                    f"other/{EXPORT_NAME}"]
    shutil.copy2(ws.db, ws.backup)  # the setup processes have exited: the file is whole

    read_only = root / "read-only"
    read_only.mkdir()
    read_only.chmod(0o555)
    ws.read_only_prefix, ws.read_only_note = read_only_access(read_only)
    return ws


def read_only_access(folder: Path) -> tuple[list[str] | None, str]:
    """How to run a child for which ``folder`` (mode 0o555) is really read-only.

    Root ignores permission bits, so as root the child runs without the capabilities
    that let it (``setpriv``); where that is impossible, the cases say so.
    """
    probe = "import pathlib, sys; pathlib.Path(sys.argv[1], 'probe').touch()"

    def blocked(prefix: list[str]) -> bool:
        proc = subprocess.run([*prefix, sys.executable, "-c", probe, str(folder)],
                              capture_output=True)
        (folder / "probe").unlink(missing_ok=True)
        return proc.returncode != 0

    if blocked([]):
        return [], ""
    if shutil.which("setpriv") and blocked(DROP_ROOT_OVERRIDE):
        return DROP_ROOT_OVERRIDE, ("running as root, which ignores permission bits: run "
                                    "with CAP_DAC_OVERRIDE dropped (setpriv)")
    return None, ("NOT TESTED: running as root, which writes into 0o555 folders, and setpriv "
                  "could not drop that right")


# -- what is stored -------------------------------------------------------------------

def storage_state(storage: RDBStorage) -> dict[str, str]:
    """A digest per stored study: its attributes and every trial's number, state, values,
    params and user attributes. ``storage`` is an Optuna ``RDBStorage``, opened once."""
    import optuna

    try:
        state = {}
        for summary in storage.get_all_studies():
            study = optuna.load_study(study_name=summary.study_name, storage=storage)
            trials = [[t.number, t.state.name, t.values, t.params, t.user_attrs]
                      for t in study.get_trials(deepcopy=False)]
            blob = json.dumps([study.user_attrs, trials], sort_keys=True, default=repr)
            state[summary.study_name] = hashlib.sha256(blob.encode()).hexdigest()
        return state
    finally:
        storage.engine.dispose()  # hold no connection while a case runs


def file_state(ws: Workspace) -> dict[str, str]:
    return {name: hashlib.sha256((ws.root / name).read_bytes()).hexdigest()
            if (ws.root / name).is_file() else "missing" for name in ws.protected}


def listing(root: Path) -> set[str]:
    """Every path under root, besides the storage's own files."""
    return {str(p.relative_to(root)) for p in root.rglob("*")
            if not p.name.startswith("s.db") and "__pycache__" not in p.parts}


def compare_states(before_db: dict[str, str], after_db: dict[str, str],
                   before_files: dict[str, str], after_files: dict[str, str]) -> str:
    """"kept", or "CHANGED: ..." naming what differs."""
    changes = []
    added = sorted(set(after_db) - set(before_db))
    removed = sorted(set(before_db) - set(after_db))
    altered = sorted(n for n in set(before_db) & set(after_db) if before_db[n] != after_db[n])
    for word, names in (("added", added), ("removed", removed), ("altered", altered)):
        if names:
            parts = names[0].split(":")  # fused_moe:KIND:SHAPE:DEVICE:M=..
            kind, device, m = parts[1], parts[-2], parts[-1]
            changes.append(f"{word} {len(names)} stud{'y' if len(names) == 1 else 'ies'} "
                           f"({kind} {device} {m}{', ...' if len(names) > 1 else ''})")
    changes += [f"{name} rewritten" for name in before_files
                if before_files[name] != after_files[name]]
    return "CHANGED: " + "; ".join(changes) if changes else "kept"


def restore(ws: Workspace, file_copies: dict[str, bytes]) -> None:
    """Put back the storage and the protected files as they were before the cases."""
    for suffix in ("-wal", "-shm"):
        (ws.root / f"s.db{suffix}").unlink(missing_ok=True)
    shutil.copy2(ws.backup, ws.db)
    for name, data in file_copies.items():
        (ws.root / name).write_bytes(data)


# -- the cases ------------------------------------------------------------------------

@dataclass
class Case:
    """One bad input: what is wrong, and the searcher arguments that try it.

    ``storage`` is added as ``--storage`` unless None. ``expect`` is "error" (must end
    non-zero with a one-line message holding ``mentions``), "interrupt" (killed on
    purpose: only the stored data is judged) or "untested" (cannot be made bad here;
    shown, not judged).
    """

    what: str
    args: list[str]
    storage: str | None = DB_URL
    expect: str = "error"
    prefix: list[str] = field(default_factory=list)
    preexec: Callable[[], None] | None = None
    interrupt: tuple[signal.Signals, float] | None = None
    hold_storage: bool = False
    #: Text the message must hold (the key or file at fault, the suggestion).
    mentions: tuple[str, ...] = ()
    #: Text it must not hold (an option the command was not given).
    avoids: tuple[str, ...] = ()

    def argv(self) -> list[str]:
        extra = ["--storage", self.storage] if self.storage else []
        return [*self.prefix, *searcher_argv(*self.args, *extra)]

    def shown(self) -> str:
        extra = f" --storage {self.storage}" if self.storage not in (None, DB_URL) else ""
        prefix = "setpriv … " if self.prefix else ""
        return f"{prefix}searcher {' '.join(self.args)}{extra}"


def limit_file_size() -> None:
    """In the child: any file write past 100 bytes fails (EFBIG), like a full disk."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (100, 100))


def cases(ws: Workspace, export_s: float) -> list[Case]:
    run = ["run", "--synthetic", "--no-live", "--study"]
    small = "inputs/small.toml"
    tiny = "inputs/tiny.toml"
    for name in ("bad_toml", "constraint_call", "not_power_of_two", "unknown_param"):
        ws.write(f"inputs/{name}.toml", (BAD_SPACES / f"{name}.toml").read_text())
    ws.write("inputs/not-utf8.toml", b"schema = 1\ngpu = \"\xff\xfe\"\n")
    ws.write("inputs/bad-vllm.json", '{"triton_version": "3.6.0", "64": {"BLOCK_SIZE_M": 16,,}')
    ws.write("inputs/bad-value-vllm.json", json.dumps({"triton_version": "3.6.0", "64": {
        "BLOCK_SIZE_M": 16, "BLOCK_SIZE_N": 64, "BLOCK_SIZE_K": 128, "GROUP_SIZE_M": 1,
        "num_warps": "four", "num_stages": 3}}, indent=4))
    ws.write("data/bad-row.csv", MALFORMED_DATASET)
    ws.write("data/no-header.csv", "16,16,64,64,1,4,3,ok,40.1\n")
    ws.write("a-file", "not a folder\n")
    export = ["export", "--study", small, "--allow-unmeasured"]  # a synthetic storage
    read_only = ws.read_only_prefix
    read_only_expect = "error" if read_only is not None else "untested"
    read_only_note = f"; {ws.read_only_note}" if ws.read_only_note else ""
    half = max(0.2, export_s / 2)

    model = ["run", "--synthetic", "--no-live", "--gpu", "NVIDIA_H200", "--model"]
    bad_json = ws.write("inputs/bad-model/config.json", '{"model_type": "deepseek_v3",')
    dense = ws.write("inputs/dense/config.json", json.dumps(
        {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 11008}))
    awq = ws.write("inputs/awq/config.json", json.dumps(
        {**json.loads(QWEN3.read_text()), "quantization_config": {"quant_method": "awq",
                                                                  "bits": 4}}))
    gpt_oss = ws.write("inputs/gpt-oss/config.json", json.dumps(
        {"model_type": "gpt_oss", "num_local_experts": 32, "num_experts_per_tok": 4,
         "hidden_size": 2880, "intermediate_size": 2880}))

    def space(name: str) -> str:
        return ws.study(f"space-{name}", 'space = "vllm-432"', f'space = "{name}.toml"')

    ws.write("inputs/no-config-space.toml", NO_CONFIG_SPACE)
    no_config = space("no-config-space")
    db = ws.backup.read_bytes()  # the copy: no open() of a file SQLite may hold
    middle = len(db) // 2
    ws.write("damaged.db", db[:middle] + random.Random(0).randbytes(200_000) + db[middle:])
    ws.write("other.db", db)  # a second storage with studies: copy must not write into it
    other_layer = f"inputs/{EXPORT_NAME.replace('E=64,', 'E=128,')}"
    ws.write(other_layer, (ws.root / "export" / EXPORT_NAME).read_text())

    return [
        # study files
        Case("malformed TOML study file", run + [ws.study(
            "malformed", "[search]", "[search\n")], mentions=("not valid TOML",)),
        Case("unknown top-level key (kernal)", run + [ws.study(
            "unknown-top-key", "schema = 1", 'schema = 1\nkernal = "fused_moe"')],
            mentions=("'kernal'", "'kernel'")),
        Case("unknown key in [search] (finalist)", run + [ws.study(
            "unknown-search-key", "trials_per_m = 6", "trials_per_m = 6\nfinalist = 2")],
            mentions=("'finalists'", "[search] takes")),
        Case("missing [shape] table", run + [ws.study(
            "no-shape", "[shape]\nE = 64\nN = 1408\nhidden = 2048\ntop_k = 6\ndtype = \"bf16\"\n",
            "")], mentions=("[shape]",)),
        Case('wrong type: trials_per_m = "many"', run + [ws.study(
            "wrong-type", "trials_per_m = 6", 'trials_per_m = "many"')],
            mentions=("trials_per_m",)),
        Case("empty batch_sizes = []", run + [ws.study(
            "empty-m", "batch_sizes = [16, 64]", "batch_sizes = []")],
            mentions=("batch_sizes",)),
        Case("batch_sizes holding M = 0", run + [ws.study(
            "m-zero", "batch_sizes = [16, 64]", "batch_sizes = [0, 16]")],
            mentions=("batch_sizes",)),
        Case('unknown sampler "tpee"', run + [ws.study(
            "bad-sampler", "trials_per_m = 6", 'trials_per_m = 6\nsampler = "tpee"')],
            mentions=("'tpe'",)),
        Case('unknown pruner "medain"', run + [ws.study(
            "bad-pruner", "trials_per_m = 6", 'trials_per_m = 6\npruner = "medain"')],
            mentions=("'median'",)),
        Case("schema = 2", run + [ws.study("schema-2", "schema = 1", "schema = 2")]),
        Case("time_limit_s = 0 in the study", run + [ws.study(
            "time-zero", "trials_per_m = 6", "trials_per_m = 6\ntime_limit_s = 0")]),
        Case("a GPU searcher has no facts for, without [gpu_facts]", run + [ws.study(
            "unknown-gpu", 'gpu = "NVIDIA_H100_80GB_HBM3"', 'gpu = "NVIDIA_RTX_9999"')],
            mentions=("[gpu_facts]",)),
        Case("study file that is not UTF-8", run + ["inputs/not-utf8.toml"]),
        Case("study file that does not exist", run + ["inputs/nope.toml"]),
        Case("missing study file named with brackets", run + ["inputs/h100[old].toml"],
             mentions=("h100[old].toml",)),
        Case("unknown study name (typo)", run + ["h100-e64-n1048"],
             mentions=("'h100-e64-n1408'",)),
        # space files
        Case("space file that does not exist", run + [ws.study(
            "no-space", 'space = "vllm-432"', 'space = "no-such-space.toml"')]),
        Case("unknown space name (typo)", run + [ws.study(
            "space-typo", 'space = "vllm-432"', 'space = "vllm-423"')],
            mentions=("'vllm-432'",)),
        Case("malformed space TOML (tests/data/spaces/bad_toml.toml)", run + [space("bad_toml")]),
        Case("space constraint calling __import__ (constraint_call.toml)",
             run + [space("constraint_call")]),
        Case("space value not a power of two (not_power_of_two.toml)",
             run + [space("not_power_of_two")], mentions=("48",)),
        Case("space with an unknown parameter (unknown_param.toml)",
             run + [space("unknown_param")], mentions=("'BLOCK_SIZE_N'",)),
        # options
        Case("--batch-sizes 0", run + [small, "--batch-sizes", "0"]),
        Case('--batch-sizes "1,,2"', run + [small, "--batch-sizes", "1,,2"],
             mentions=("empty item",)),
        Case("batch_sizes = [1, 100000000000]", run + [ws.study(
            "huge-m", "batch_sizes = [16, 64]", "batch_sizes = [1, 100000000000]")],
             mentions=("100000000000", "M <= 1,048,576")),
        Case("a space whose constraints reject every config (run)", run + [no_config],
             mentions=("no-config-space.toml", "M=16", "E=64,N=1408", "no config is valid")),
        Case("a space whose constraints reject every config (grid)",
             ["grid", "--synthetic", "--study", no_config],
             mentions=("no-config-space.toml", "M=16", "E=64,N=1408", "no config is valid")),
        Case("--batch-sizes 32 (not in the study)", run + [small, "--batch-sizes", "32"]),
        Case("--trials-per-m 0", run + [small, "--trials-per-m", "0"]),
        Case("--time-limit 0", run + [small, "--time-limit", "0"]),
        Case("--time-limit nan (on a batch size not yet searched)", run + [ws.study(
            "with-128", "batch_sizes = [16, 64]", "batch_sizes = [16, 64, 128]"),
            "--batch-sizes", "128", "--time-limit", "nan"]),
        Case("--workers 0", run + [small, "--workers", "0"]),
        Case("--workers many", run + [small, "--workers", "many"]),
        Case("no GPU, and neither --replay nor --synthetic", ["run", "--study", small,
                                                             "--no-live"],
             mentions=("--replay", "--synthetic"), avoids=("--workers",)),
        Case("bench -M 0", ["bench", "-M", "0", "--default"], storage=None),
        Case("bench without a GPU", ["bench", "-M", "64", "--default"], storage=None),
        # storages
        Case("unreachable storage (PostgreSQL on loopback port 1)", run + [small],
             storage="postgresql+psycopg://nobody@127.0.0.1:1/x"),
        Case("storage whose driver is not installed (mysql://)", run + [small],
             storage="mysql://nobody@127.0.0.1:1/x"),
        Case("storage URL with an unknown dialect", run + [small], storage="nosuchdb://x/y"),
        Case("SQLite storage in a missing folder", run + [small],
             storage="sqlite:///missing/folder/s.db"),
        Case("in-memory SQLite storage (sqlite:///:memory:)", run + [small],
             storage="sqlite:///:memory:", mentions=("in-memory", "sqlite:///searcher.db")),
        Case("SQLite storage URL without a path (sqlite:///)", run + [small],
             storage="sqlite:///", mentions=("in-memory", "sqlite:///searcher.db")),
        Case("status of a study the storage does not hold", ["status", "--study", "h200-e64-n1408"],
             mentions=("holds no study of h200-e64-n1408",)),
        Case("in-memory SQLite storage, read (status)", ["status", "--study", small],
             storage="sqlite:///:memory:", mentions=("in-memory",)),
        Case("200 KB of random bytes in the middle of the database", ["status", "--study", small],
             storage="sqlite:///damaged.db",
             mentions=("damaged.db is not a searcher/Optuna storage or is damaged",)),
        Case("200 KB of random bytes in the middle of the database (run)", run + [small],
             storage="sqlite:///damaged.db",
             mentions=("damaged.db is not a searcher/Optuna storage or is damaged",)),
        Case("a bare file name as storage (url.db)", run + [small], storage="url.db",
             mentions=("sqlite:///url.db",)),
        Case("postgres:// (SQLAlchemy's dialect is postgresql)", ["status", "--study", small],
             storage="postgres://nobody@127.0.0.1:1/x",
             mentions=("postgresql://nobody@127.0.0.1:1/x",)),
        Case("journal:///tmp/... meant as absolute (three slashes: relative, as in sqlite:///)",
             run + [small], storage="journal:///tmp/searcher-no-such-folder/y.journal",
             mentions=("journal:////tmp/searcher-no-such-folder/y.journal",)),
        Case("SQLite storage that is the exported JSON file", export + ["--out", "other"],
             storage=f"sqlite:///export/{EXPORT_NAME}"),
        # another GPU's data, another search's data
        Case("replay of a dataset recorded on another GPU (H200)",
             ["run", "--no-live", "--study", small, "--replay", str(H200_DATASET)],
             mentions=("--allow-other-gpu",)),
        Case("same study names made with another space (mixing two searches)",
             run + [tiny], mentions=("vllm-432", "tiny-space")),
        # export
        Case("export onto an existing file without --overwrite", export + ["--out", "export"],
             mentions=("--overwrite",)),
        Case("export --overwrite --merge", export + ["--out", "export", "--overwrite",
                                                     "--merge"]),
        Case("export --merge into a malformed vLLM file", export + ["--out", "other", "--merge"]),
        Case(f"export into a read-only folder{read_only_note}", export + ["--out", "read-only"],
             prefix=read_only or [], expect=read_only_expect),
        Case("export --out a file", export + ["--out", "a-file"]),
        Case("export --out a missing folder named out[/x]", export + ["--out", "out[/x]"],
             mentions=("out[/x]",)),
        Case("export of a GPU with nothing stored", export + ["--out", "other", "--device",
                                                              "NVIDIA_H200"]),
        Case("export --overwrite whose write fails mid-file (file-size limit, as a full disk)",
             export + ["--out", "export", "--overwrite"], preexec=limit_file_size,
             hold_storage=True),
        Case(f"export --overwrite killed (SIGKILL after {half:.1f} s)",
             export + ["--out", "export", "--overwrite"], expect="interrupt",
             interrupt=(signal.SIGKILL, half)),
        Case(f"export --overwrite stopped (SIGTERM after {half:.1f} s)",
             export + ["--out", "export", "--overwrite"], expect="interrupt",
             interrupt=(signal.SIGTERM, half)),
        # compare, grid
        Case("compare --against a malformed vLLM JSON", [
            "compare", "--study", small, "--no-remeasure", "--against", "inputs/bad-vllm.json"]),
        Case("compare --against a file whose name says another E", [
            "compare", "--study", small, "--no-remeasure", "--against", other_layer, "--out",
            "export"], mentions=("E=128,N=1408", "E=64,N=1408")),
        Case("compare --against vllm, a layer vLLM ships no file for (or no vLLM here)", [
            "compare", "--study", small, "--no-remeasure", "--against", "vllm"],
             mentions=("E=64,N=1408,device_name=NVIDIA_H100_80GB_HBM3.json",)),
        Case("export with a batch size not stored: the hint keeps --storage", [
            "export", "--study", ws.study("small-128", "batch_sizes = [16, 64]",
                                          "batch_sizes = [16, 64, 128]"), "--out", "other"],
             mentions=("--storage sqlite:///s.db",)),
        Case('compare --against a vLLM JSON with num_warps = "four"', [
            "compare", "--study", small, "--no-remeasure", "--against",
            "inputs/bad-value-vllm.json"], mentions=("num_warps",)),
        Case("grid --replay of a dataset with a malformed row",
             ["grid", "--study", small, "--replay", "data/bad-row.csv"]),
        Case("grid --replay of a dataset without a header",
             ["grid", "--study", small, "--replay", "data/no-header.csv"]),
        Case("grid --time-limit 0", ["grid", "--study", tiny, "--synthetic", "--batch-sizes",
                                     "64", "--time-limit", "0"]),
        Case("grid --limit-per-m -1", ["grid", "--study", tiny, "--synthetic",
                                       "--batch-sizes", "64", "--limit-per-m", "-1"]),
        Case("grid --limit-per-m 0", ["grid", "--study", tiny, "--synthetic",
                                      "--batch-sizes", "64", "--limit-per-m", "0"]),
        Case("grid --dataset onto an existing dataset file", [
            "grid", "--study", tiny, "--no-run", "--batch-sizes", "16",
            "--dataset", "data/my-dataset.csv"]),
        Case("grid --dataset naming an existing folder", [
            "grid", "--study", tiny, "--no-run", "--batch-sizes", "16", "--dataset", "data"]),
        Case(f"grid --dataset into a read-only folder{read_only_note}",
             ["grid", "--study", tiny, "--no-run", "--batch-sizes", "16",
              "--dataset", "read-only/x.csv"], prefix=read_only or [], expect=read_only_expect),
        # studies made from a model (--model, init)
        Case("--model: an id not in the Hugging Face cache", model + ["org/missing"],
             mentions=("models--org--missing", "never downloads")),
        Case("--model: no such file", model + ["inputs/nowhere/config.json"],
             mentions=("no such file",)),
        Case("--model: malformed config.json", model + [bad_json],
             mentions=("not valid JSON",)),
        Case("--model: a dense model (no MoE keys)", model + [dense],
             mentions=("no mixture-of-experts", "hidden_size")),
        Case("--model: --tp 3 does not divide N = 2048", model + [DSV3, "--tp", "3"],
             mentions=("--tp 3", "2048")),
        Case("--model: --ep 7 does not divide E = 256", model + [DSV3, "--ep", "7"],
             mentions=("--ep 7", "256")),
        Case("--model: an AWQ checkpoint", model + [awq], mentions=("'awq'",)),
        Case("init --model: gpt-oss experts", ["init", "--gpu", "NVIDIA_H200", "--out",
                                               "inputs/gpt-oss.toml", "--model", gpt_oss],
             mentions=("gpt_oss", "biases")),
        # decide and copy
        Case("decide --stored: a study with no finished search here",
             ["decide", "--study", "h200-deepseek-v3-tp8-fp8", "--stored"],
             mentions=("no finished search",)),
        Case("decide --stored with --against (it measures nothing)",
             ["decide", "--study", small, "--stored", "--against", "inputs/bad-vllm.json"],
             mentions=("--stored measures nothing",)),
        Case("decide --device without --stored", ["decide", "--study", small, "--synthetic",
                                                  "--device", "NVIDIA_H200"],
             mentions=("--device goes with --stored",)),
        Case("copy into a storage that already holds studies",
             ["copy", "--to", "sqlite:///other.db"], mentions=("other.db", "already holds")),
    ]


# -- running a case -------------------------------------------------------------------

@dataclass
class Outcome:
    case: Case
    code: int | None  # None: did not finish in time
    message: str  # the message's first line (or what there was instead)
    message_lines: int  # lines from the "searcher <command>:" line to the end of stderr
    traceback: bool
    stored: str
    left: list[str]
    seconds: float
    note: str = ""

    def problems(self) -> list[str]:
        found = []
        if self.stored != "kept":
            found.append("stored data changed")
        if self.case.expect != "error":
            return found
        if self.code is None:
            found.append(f"still running after {CASE_TIMEOUT_S} s")
        elif self.code == 0:
            found.append("exit code 0")
        if self.traceback:
            found.append("traceback")
        elif not self.message_lines:
            found.append("no 'searcher <command>:' message")
        elif self.message_lines > 1:
            found.append(f"message spans {self.message_lines} lines")
        if self.message_lines and not self.traceback:
            found += [f"message lacks {text!r}" for text in self.case.mentions
                      if text not in self.message]
            found += [f"message names {text!r}, which the command did not use"
                      for text in self.case.avoids if text in self.message]
        return found


@contextmanager
def storage_held_open(ws: Workspace) -> Iterator[None]:
    """Keep a reader on the storage, so its shared-memory file exists at full size and a
    child limited to tiny files can still open it."""
    connection = sqlite3.connect(ws.db)
    try:
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
        yield
    finally:
        connection.close()


def read_message(stderr: str, stdout: str) -> tuple[str, int]:
    """The error message (from the last line starting ``searcher ``, argparse's too) and
    how many lines it spans; else the last line of stderr, or of stdout, and 0."""
    lines = [line.rstrip() for line in stderr.splitlines() if line.strip()]
    starts = [i for i, line in enumerate(lines) if line.startswith("searcher ")]
    if starts:
        message = lines[starts[-1]:]
        more = f" (+{len(message) - 1} more line(s): {message[1]})" if len(message) > 1 else ""
        return message[0] + more, len(message)
    if lines:
        return lines[-1], 0
    out = [line.strip() for line in stdout.splitlines() if line.strip()]
    return (f"stdout: {out[-1]}" if out else ""), 0


def run_case(case: Case, ws: Workspace, storage: RDBStorage, baseline: tuple[dict, dict],
             copies: dict[str, bytes]) -> Outcome:
    """Run one case; judge what is stored against ``baseline`` (the storage's and the
    protected files' states before the cases), putting ``copies`` back if it changed."""
    paths = listing(ws.root)
    note = ""
    start = time.perf_counter()
    with storage_held_open(ws) if case.hold_storage else nullcontext():
        proc = subprocess.Popen(case.argv(), cwd=ws.root, env=child_env(), text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                preexec_fn=case.preexec)
        try:
            if case.interrupt:
                sig, delay = case.interrupt
                try:
                    proc.communicate(timeout=delay)
                    note = f"finished before the {sig.name}"
                except subprocess.TimeoutExpired:
                    proc.send_signal(sig)
            out, err = proc.communicate(timeout=CASE_TIMEOUT_S)
            code: int | None = proc.returncode
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            code = None
    seconds = time.perf_counter() - start
    after = storage_state(storage), file_state(ws)
    stored = compare_states(baseline[0], after[0], baseline[1], after[1])
    if stored != "kept":
        restore(ws, copies)
    left = sorted(listing(ws.root) - paths)
    for name in reversed(left):  # deepest first
        path = ws.root / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    message, lines = read_message(err, out)
    return Outcome(case, code, message, lines, "Traceback (most recent call last)" in err,
                   stored, left, seconds, note)


# -- the table ------------------------------------------------------------------------

def cell(text: str, limit: int | None = None) -> str:
    if limit and len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("|", "\\|").replace("\n", " ")


def exit_text(o: Outcome) -> str:
    if o.code is None:
        return f"none (killed after {CASE_TIMEOUT_S} s)"
    if o.code < 0:
        return f"{o.code} ({signal.Signals(-o.code).name})"
    return str(o.code)


def stored_text(o: Outcome) -> str:
    parts = [o.stored]
    if o.left:
        parts.append(f"left {', '.join(o.left)}")
    if o.note:
        parts.append(o.note)
    return "; ".join(parts)


def render(ws: Workspace, outcomes: list[Outcome], seconds: float) -> str:
    root = str(ws.root)
    user = "as root" if os.geteuid() == 0 else "not as root"
    lines = [
        "# searcher on bad inputs",
        "",
        f"`python benchmarks/bad_inputs.py` on a CPU ({user}, Python "
        f"{sys.version.split()[0]}; {seconds:.0f} s). Before the cases the storage "
        "`s.db` held a synthetic search of a copy of `h100-e64-n1408` (M = 16 and 64, 6 "
        "trials each) and a tiny synthetic grid (`inputs/tiny.toml`, 8 configs, M = 16); "
        "`export/` held the search's exported vLLM file and the grid's dataset, "
        "`data/my-dataset.csv` a user's dataset and `other/` a malformed vLLM file. Every "
        f"command below also gets `--storage {DB_URL}` unless it names another. \"stored "
        "data\" compares, after each case, every stored study (its attributes and each "
        "trial's number, state, values, params and user attributes) and those four files' "
        "bytes with what they were before the cases; a case that changed them is undone "
        "before the next. \"message\" is the last line of stderr that starts with "
        "`searcher ` (the red message) and what follows it; a traceback's last line is "
        "marked TRACEBACK; where stderr holds neither, the last line of stderr or stdout.",
        "",
        "| # | input | command (short) | exit code | message | stored data |",
        "|---|---|---|---|---|---|",
    ]
    for number, o in enumerate(outcomes, start=1):
        message = o.message.replace(root + "/", "").replace(root, ".")
        if o.traceback:
            message = "TRACEBACK: " + message
        if o.case.expect == "untested":
            message = "(not judged) " + message
        lines.append(f"| {number} | {cell(o.case.what)} | `{cell(o.case.shown(), 110)}` | "
                     f"{exit_text(o)} | {cell(message or '(none)', MESSAGE_CHARS)} | "
                     f"{cell(stored_text(o))} |")
    offending = [(n, o) for n, o in enumerate(outcomes, start=1) if o.problems()]
    lines.append("")
    if offending:
        lines.append(f"{len(offending)} of {len(outcomes)} cases need fixing:")
        lines.append("")
        lines += [f"- #{n} {o.case.what}: {'; '.join(o.problems())}" for n, o in offending]
    else:
        lines.append(f"All {len(outcomes)} cases ended non-zero with a one-line message, "
                     "and nothing stored changed.")
    return "\n".join(lines) + "\n"


def time_export(ws: Workspace) -> float:
    """Seconds one export takes here (when to interrupt one)."""
    scratch = ws.root / "scratch"
    scratch.mkdir()
    start = time.perf_counter()
    setup_step(ws, "export", "--study", "inputs/small.toml", "--storage", DB_URL,
               "--out", "scratch", "--allow-unmeasured")
    seconds = time.perf_counter() - start
    shutil.rmtree(scratch)
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also write the Markdown to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    start = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="searcher-bad-inputs-"))
    try:
        ws = prepare(root)
        all_cases = cases(ws, time_export(ws))
        storage = optuna.storages.RDBStorage(f"sqlite:///{ws.db}")
        baseline = storage_state(storage), file_state(ws)
        copies = {name: (ws.root / name).read_bytes() for name in ws.protected}
        outcomes = []
        for number, case in enumerate(all_cases, start=1):
            outcome = run_case(case, ws, storage, baseline, copies)
            outcomes.append(outcome)
            print(f"[{number}/{len(all_cases)}] {outcome.seconds:4.1f} s  {case.what}",
                  file=sys.stderr, flush=True)
        text = render(ws, outcomes, time.perf_counter() - start)
    finally:
        if args.keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            if (root / "read-only").exists():
                (root / "read-only").chmod(0o755)
            shutil.rmtree(root, ignore_errors=True)
    print(text, end="")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 1 if any(o.problems() for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
