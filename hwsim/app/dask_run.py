"""Simulate a sample set over a Dask cluster, one shard file per shard, resumable after a kill.

The samples are cut into fixed shards (`hwsim.app.parallel.plan_shards`, same samples and shard size ->
same shards). Each shard is a Dask task: a worker loads the model once, simulates the shard and
writes its partial atomically to `SHARD_DIR/shard-KKKKK.json`. The folder's `manifest.json` holds a
fingerprint of the model, hardware config, settings and token ids; shard files carry it too, so a
rerun of the same run skips every finished shard (no shard is written twice) and a different run
is refused rather than mixed in. When all shards are on disk they are merged exactly
(`hwsim.app.parallel.merge`). Workers must see the model, hardware config and shard folder at the same
paths (one machine, or a shared filesystem). A worker keeps the plan of a model between shards and
between runs, keyed by a digest of the model and hardware files: the workers of a `--scheduler`
cluster outlive a run, and a model rewritten at the same path must not be simulated with the old plan.
Before a run on an existing cluster, its scheduler and workers must hold the same project files as this
process (`check_cluster`): one without the project would die on its first task and leave the run
waiting forever, one with other code would count differently.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from hwsim.app.parallel import RunSpec, Shard, longest_first, merge, ort_session, plan_shards, simulate_shard, worker_plan
from models.errors import UserError
from models.files import atomic_path

MANIFEST = "manifest.json"
PACKAGES = ("hwsim", "models", "quant", "export")  # the project's packages and the files they ship
SHIPPED = (".py", ".json", ".csv", ".yaml")


def _hash_files(h, spec: RunSpec) -> None:
    """Feed the bytes of the model and hardware config files of `spec` to the hash `h`."""
    for path in (spec.model, spec.hw):
        if path is not None:
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
        h.update(b"\0")


def files_digest(spec: RunSpec) -> str:
    """sha256 over the model and hardware config files: what a worker's plan depends on."""
    h = hashlib.sha256()
    _hash_files(h, spec)
    return h.hexdigest()


def fingerprint(spec: RunSpec, ids: list[np.ndarray], shard_size: int) -> str:
    """sha256 over everything a shard's content depends on."""
    h = hashlib.sha256()
    _hash_files(h, spec)
    h.update(json.dumps([spec.overflow, spec.check_ort, shard_size, len(ids)]).encode())
    for row in ids:
        h.update(np.int64(len(row)).tobytes() + np.asarray(row, dtype=np.int64).tobytes())
    return h.hexdigest()


def shard_path(shard_dir: Path, key: int) -> Path:
    return Path(shard_dir) / f"shard-{key:05d}.json"


def read_shard(path: Path, fp: str) -> dict | None:
    """The partial in `path` if it is a complete shard of run `fp`, else None (also for a shard
    written before partials carried logits: it is simulated again)."""
    try:
        part = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return part if part.get("fingerprint") == fp and "logits" in part else None


def claim_folder(shard_dir: Path, fp: str, spec: RunSpec, shards: int, samples: int) -> None:
    """Write the manifest of run `fp`, or check that the folder already belongs to it."""
    path = Path(shard_dir) / MANIFEST
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8")).get("fingerprint")
        except ValueError:
            old = None
        if old != fp:
            raise UserError(f"shard folder {shard_dir} holds shards of another run (other model, hardware config, "
                            f"samples or settings); delete it or pass another --shard-dir")
        return
    manifest = {"fingerprint": fp, "model": spec.model, "hw": spec.hw, "overflow": spec.overflow,
                "check_ort": spec.check_ort, "shards": shards, "samples": samples}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1), encoding="utf-8")


@functools.lru_cache(maxsize=2)
def _worker_files(digest: str, model: str, hw: str | None, check_ort: bool):
    """(plan, onnxruntime session or None) of a worker, loaded once per content `digest` of the files
    (`files_digest`), not per path as in the one-run pool of `hwsim.app.parallel`."""
    plan = worker_plan.__wrapped__(model, hw)  # its loading and BLAS setting, without its path-keyed cache
    return plan, ort_session(model, threads=1) if check_ort else None


def run_shard(spec: RunSpec, shard: Shard, path: str, fp: str, digest: str) -> str:
    """Dask task: simulate `shard` and write its partial atomically to `path` (kept if already there).
    `digest` is the `files_digest` of `spec` on the driver."""
    if read_shard(Path(path), fp) is None:
        plan, sess = _worker_files(digest, spec.model, spec.hw, bool(spec.check_ort))
        part = {"fingerprint": fp, **simulate_shard(plan, spec, shard, sess)}
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(part), encoding="utf-8")
    return path


def code_digest() -> str:
    """sha256 over the project's files (modules and package data) as this interpreter finds them."""
    from importlib.util import find_spec

    h = hashlib.sha256()
    for name in PACKAGES:
        root = Path(find_spec(name).origin).parent  # found, not imported: no torch for `quant`
        for path in sorted(p for p in root.rglob("*") if p.suffix in SHIPPED and "__pycache__" not in p.parts):
            h.update(f"{name}/{path.relative_to(root).as_posix()}\0".encode() + path.read_bytes())
    return h.hexdigest()


def _probe():
    """A function that tells, where Dask runs it, (`code_digest()`, None) or (None, why not). It is
    local, so Dask ships it by value and a machine without the project can run it too."""
    def probe():
        import importlib
        try:
            return importlib.import_module("hwsim.app.dask_run").code_digest(), None
        except Exception as err:  # noqa: BLE001 - any failure is reported to the driver
            return None, f"{type(err).__name__}: {err}"
    return probe


def check_cluster(client, address: str) -> None:
    """Refuse the cluster at `address` unless its scheduler (which unpickles the tasks) and every
    worker connected now hold the same project files as this process; workers that join later are
    not checked."""
    want, probe = code_digest(), _probe()
    found = {"scheduler": client.run_on_scheduler(probe), **client.run(probe)}
    bad = {where: why or "other project files than this process"
           for where, (digest, why) in found.items() if digest != want}
    if bad:
        named = "; ".join(f"{where}: {why}" for where, why in sorted(bad.items()))
        raise UserError(f"the Dask cluster at {address} does not run this project's code ({named}); install this "
                        f"version of the project on the scheduler's and every worker's machine, or start them "
                        f"with PYTHONPATH set to a copy of this checkout")


@contextlib.contextmanager
def dask_client(workers: int | None = None, scheduler: str | None = None):
    """A client of the scheduler at `scheduler`, or of a new LocalCluster of `workers` processes."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise UserError("--workers/--scheduler need Dask: pip install 'dask[distributed]', "
                        "or run on this machine's cores with --jobs") from None
    if scheduler:
        try:
            client = Client(scheduler, timeout="30s")
        except OSError as err:
            raise UserError(f"no Dask scheduler at {scheduler} ({err}); start one with `dask scheduler` "
                            f"and workers with `dask worker {scheduler}`") from None
        with client:
            check_cluster(client, scheduler)
            yield client
        return
    with LocalCluster(n_workers=workers or 1, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        yield client


def simulate_dask(plan, spec: RunSpec, ids: list[np.ndarray], labels, client, shard_dir,
                  shard_size: int = 64, progress: bool = True) -> dict:
    """All samples as Dask tasks of `shard_size` samples, shards kept in `shard_dir`; the same
    report as `hwsim.app.parallel.simulate_local`. Finished shards of an earlier run are not redone."""
    from distributed import as_completed
    from tqdm import tqdm

    shard_dir = Path(shard_dir).resolve()  # workers may run elsewhere: absolute paths
    wspec = replace(spec, model=str(Path(spec.model).resolve()), hw=spec.hw and str(Path(spec.hw).resolve()))
    shards = plan_shards(ids, shard_size)
    fp, digest = fingerprint(spec, ids, shard_size), files_digest(spec)
    claim_folder(shard_dir, fp, spec, len(shards), len(ids))
    todo = [s for s in shards if read_shard(shard_path(shard_dir, s.key), fp) is None]
    done = len(ids) - sum(len(s.indices) for s in todo)
    with tqdm(total=len(ids), initial=done, desc="hwsim run (dask)", unit="sample", disable=not progress) as bar:
        if done:
            bar.write(f"resuming: {len(shards) - len(todo)} of {len(shards)} shards already in {shard_dir}")
        futures = {client.submit(run_shard, wspec, s, str(shard_path(shard_dir, s.key)), fp, digest, pure=False,
                                 key=f"hwsim-shard-{fp[:12]}-{s.key:05d}"): len(s.indices) for s in longest_first(todo)}
        try:
            for fut in as_completed(list(futures)):
                fut.result()  # a worker's error is raised here
                bar.update(futures[fut])
        finally:
            client.cancel(list(futures))
    partials = [read_shard(shard_path(shard_dir, s.key), fp) for s in shards]
    lost = [s.key for s, p in zip(shards, partials) if p is None]
    if lost:
        raise UserError(f"shard files {lost[:5]} missing or damaged in {shard_dir}; rerun to redo them")
    return merge(plan, spec.model, partials, len(ids), labels)
