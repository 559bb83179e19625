"""What a storage holds for a study spec: per-batch-size summaries and the winners to
export. Needs optuna, not a GPU."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from searcher.errors import ExportError, StorageError
from searcher.store import record
from searcher.store.record import MSummary, summarize_study
from searcher.study.spec import StudySpec

if TYPE_CHECKING:  # pragma: no cover
    import optuna

    from searcher.kernels.base import Config

__all__ = ["stored_summaries", "stored_studies", "no_stored_study", "winners", "export_study",
           "Exported", "ALLOW_UNMEASURED"]

#: The export option that lets synthetic or replayed results be written as a vLLM file.
ALLOW_UNMEASURED = "--allow-unmeasured"


@dataclass(frozen=True)
class Exported:
    """What :func:`export_study` wrote: the file, the batch sizes it took from the study,
    and those of vLLM's tuning list it filled with vLLM's default config."""

    path: Path
    tuned: list[int]
    filled: list[int]
    all_default: bool = False  # every entry is vLLM's default: the file changes nothing


def stored_summaries(spec: StudySpec, storage_url: str, device: str, kind: str = "search",
                     batch_sizes: Sequence[int] | None = None) -> list[MSummary | None]:
    """The summary of each batch size's stored study (None where none is stored)."""
    from searcher.store.storage import iter_studies, open_storage

    storage = open_storage(storage_url, read_only=True)
    return [summarize_study(spec.kernel, study, M) if study is not None else None
            for M, study in iter_studies(storage, kind, spec, device,
                                         batch_sizes or spec.batch_sizes)]


def stored_studies(spec: StudySpec, storage_url: str, device: str, kind: str = "search",
                   batch_sizes: Sequence[int] | None = None) -> list[tuple[int, optuna.Study]]:
    """Each batch size's stored study of ``kind``, for the batch sizes that have one.

    Raises:
        StorageError: the storage cannot be opened read-only, or it holds no study of
            ``kind`` of ``spec`` on ``device`` (:func:`no_stored_study`).
    """
    from searcher.store.storage import iter_studies, open_storage

    storage = open_storage(storage_url, read_only=True)
    found = [(M, study) for M, study in iter_studies(storage, kind, spec, device,
                                                     batch_sizes or spec.batch_sizes)
             if study is not None]
    if not found:
        raise no_stored_study(storage, storage_url, spec, device, kind)
    return found


def no_stored_study(storage: optuna.storages.BaseStorage, storage_url: str, spec: StudySpec,
                    device: str, kind: str = "search") -> StorageError:
    """The error for a storage without a study of ``kind`` of ``spec`` on ``device``,
    naming the devices it holds that study for (another GPU's run: pass --device). An
    empty table and exit 0 would read as a run without results."""
    from searcher.store.storage import stored_devices

    others = [d for d in stored_devices(storage, spec.kernel, kind, spec.shape) if d != device]
    hint = f" (it has some for: {', '.join(others)}; pass --device)" if others else ""
    return StorageError(f"{storage_url} holds no study of {spec.name} on {device}{hint}")


def winners(spec: StudySpec, storage_url: str, device: str,
            batch_sizes: Sequence[int] | None = None,
            kind: str = "search") -> tuple[dict[int, Config], str]:
    """The config to export for each batch size, and the Triton version that tuned them.

    The winner of the finalists' side-by-side run where one exists, else the best
    completed trial (for ``kind="grid"``: the grid's fastest config).

    Raises:
        ExportError: a batch size has no completed trial (never filled silently).
        StorageError: no Triton version is stored with the studies.
    """
    chosen, triton_version, _ = _winners(spec, storage_url, device, batch_sizes, kind)
    return chosen, triton_version


def _winners(spec: StudySpec, storage_url: str, device: str,
             batch_sizes: Sequence[int] | None,
             kind: str) -> tuple[dict[int, Config], str, dict[str, list[int]]]:
    """:func:`winners`, and the batch sizes of each unmeasured source (synthetic, replay)."""
    from searcher.store.storage import iter_studies, open_storage, stored_devices, study_name

    storage = open_storage(storage_url, read_only=True)
    chosen: dict[int, Config] = {}
    missing = []
    triton_version = None
    unmeasured: dict[str, list[int]] = {}
    for M, study in iter_studies(storage, kind, spec, device, batch_sizes or spec.batch_sizes):
        summary = summarize_study(spec.kernel, study, M) if study is not None else None
        config = summary and (summary.winner or summary.best_config)
        if config is None:
            missing.append(M)
            continue
        chosen[M] = config
        info = study.user_attrs.get(record.DEVICE_INFO) or {}
        triton_version = triton_version or info.get("triton_version")
        source = record.unmeasured_source(study.user_attrs)
        if source is not None:
            unmeasured.setdefault(source, []).append(M)
    if missing:
        have = stored_devices(storage, spec.kernel, "search", spec.shape)
        hint = f"; studies of this shape exist for: {', '.join(have)}" if have and device not in have else ""
        raise ExportError(
            f"study {spec.name} on {device}: batch size(s) {', '.join(map(str, missing))} have "
            f"no completed trial in {storage_url} (e.g. study "
            f"{study_name(spec.kernel, kind, spec.shape, device, missing[0])!r}); run "
            f"`{spec.command('run' if kind == 'search' else 'grid', storage_url)}` to finish "
            "them, or export fewer with "
            f"--batch-sizes{hint}"
        )
    if triton_version is None:
        raise StorageError(f"study {spec.name} on {device}: no Triton version is stored")
    return chosen, triton_version, unmeasured


def export_study(spec: StudySpec, storage_url: str, device: str, out_dir: str | Path,
                 overwrite: bool = False, merge: bool = False,
                 batch_sizes: Sequence[int] | None = None, kind: str = "search",
                 allow_unmeasured: bool = False) -> Exported:
    """Write the winners (of the search, or of the grid with ``kind="grid"``) in the
    kernel's file format (``spec.kernel.file_name``, ``render_file``) under ``out_dir``.

    Every batch size of vLLM's tuning list (:data:`~searcher.study.spec.DEFAULT_BATCH_SIZES`)
    that was not exported gets vLLM's default config (with ``merge``, only where the
    existing file lacks it too), because vLLM looks a batch size up by the nearest key: a
    file of M = 1..8 alone would run M = 4096 with M = 8's config.

    Raises:
        ExportError: ``out_dir`` is a file or its parent is missing, a batch size has no
            completed trial, the results are synthetic or replayed and ``allow_unmeasured``
            is False, or the file cannot be written (see
            :func:`searcher.results.export.write_config_file`).
        StorageError: no Triton version is stored with the studies.
    """
    from searcher.results.export import output_folder, write_config_file
    from searcher.study.spec import DEFAULT_BATCH_SIZES

    configs, triton_version, unmeasured = _winners(spec, storage_url, device, batch_sizes, kind)
    if unmeasured and not allow_unmeasured:
        what = "; ".join(f"{source} at M = {', '.join(map(str, Ms))}"
                         for source, Ms in unmeasured.items())
        raise ExportError(
            f"study {spec.name} on {device}: the results are not GPU measurements ({what}); "
            f"a vLLM file of them would present configs that no GPU chose. Pass {ALLOW_UNMEASURED} "
            "to write it anyway")
    out_dir = output_folder(out_dir)
    path = out_dir / spec.kernel.file_name(spec.shape, device)
    kept: set[int] = set()
    if merge and path.is_file():
        kept = set(spec.kernel.read_file(path)[1])
    filled = [M for M in DEFAULT_BATCH_SIZES if M not in configs and M not in kept]
    tuned = list(configs)
    for M in filled:
        configs[M] = spec.kernel.default_config(spec.shape, M)
    if filled:
        configs = {M: configs[M] for M in sorted(configs)}
    write_config_file(path, spec.kernel, triton_version, configs, overwrite=overwrite,
                      merge=merge)
    all_default = not kept and all(config == spec.kernel.default_config(spec.shape, M)
                                   for M, config in configs.items())
    return Exported(path, tuned, filled, all_default)
