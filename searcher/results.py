"""What a storage holds for a study spec: per-batch-size summaries and the winners to
export. Needs optuna, not a GPU."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from searcher.errors import ExportError, StorageError
from searcher import record
from searcher.record import MSummary, summarize_study
from searcher.spec import StudySpec

if TYPE_CHECKING:  # pragma: no cover
    from searcher.kernels.base import Config

__all__ = ["stored_summaries", "winners", "export_study"]


def stored_summaries(spec: StudySpec, storage_url: str, device: str, kind: str = "search",
                     batch_sizes: Sequence[int] | None = None) -> list[MSummary | None]:
    """The summary of each batch size's stored study (None where none is stored)."""
    from searcher.storage import iter_studies, open_storage

    storage = open_storage(storage_url, read_only=True)
    return [summarize_study(spec.kernel, study, M) if study is not None else None
            for M, study in iter_studies(storage, kind, spec, device,
                                         batch_sizes or spec.batch_sizes)]


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
    from searcher.storage import iter_studies, open_storage, stored_devices, study_name

    storage = open_storage(storage_url, read_only=True)
    chosen: dict[int, Config] = {}
    missing = []
    triton_version = None
    for M, study in iter_studies(storage, kind, spec, device, batch_sizes or spec.batch_sizes):
        summary = summarize_study(spec.kernel, study, M) if study is not None else None
        config = summary and (summary.winner or summary.best_config)
        if config is None:
            missing.append(M)
            continue
        chosen[M] = config
        info = study.user_attrs.get(record.DEVICE_INFO) or {}
        triton_version = triton_version or info.get("triton_version")
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
    return chosen, triton_version


def export_study(spec: StudySpec, storage_url: str, device: str, out_dir: str | Path,
                 overwrite: bool = False, merge: bool = False,
                 batch_sizes: Sequence[int] | None = None, kind: str = "search") -> Path:
    """Write the winners (of the search, or of the grid with ``kind="grid"``) in the
    kernel's file format (``spec.kernel.file_name``, ``render_file``) under ``out_dir``;
    returns the file.

    Raises:
        ExportError: ``out_dir`` is a file or its parent is missing, a batch size has no
            completed trial, or the file cannot be written (see
            :func:`searcher.export.write_config_file`).
        StorageError: no Triton version is stored with the studies.
    """
    from searcher.export import output_folder, write_config_file

    configs, triton_version = winners(spec, storage_url, device, batch_sizes, kind)
    out_dir = output_folder(out_dir)
    path = out_dir / spec.kernel.file_name(spec.shape, device)
    return write_config_file(path, spec.kernel, triton_version, configs, overwrite=overwrite,
                             merge=merge)
