"""Writing tuned-config files, and looking a batch size up in one, as vLLM does.

A kernel names, renders and reads its files (``Kernel.file_name``, ``render_file``,
``read_file``); what is the same for all of them lives here: the atomic write that never
leaves a half-written file, merging into an existing file, and vLLM's lookup of a batch
size by the nearest key (ties: the first key in file order).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

from searcher.errors import ExportError

if TYPE_CHECKING:  # pragma: no cover
    from searcher.kernels.base import Config, Kernel

__all__ = ["write_config_file", "nearest_config", "output_folder"]


def output_folder(path: str | Path, option: str = "--out") -> Path:
    """The folder ``path`` to write into, created when it is missing and its parent exists
    (only the last folder is made, so a mistyped parent is an error, not a new tree).

    Raises:
        ExportError: ``path`` is a file, or its parent does not exist, or it cannot be made.
    """
    folder = Path(path)
    if folder.is_dir():
        return folder
    if folder.exists():
        raise ExportError(f"{option} {folder}: not a directory")
    parent = folder.parent
    if not parent.is_dir():
        raise ExportError(f"{option} {folder}: folder {parent} does not exist (searcher makes "
                          "only the last folder of --out)")
    try:
        folder.mkdir()
    except FileExistsError:
        pass
    except OSError as exc:
        raise ExportError(f"{option} {folder}: cannot make the folder ({exc.strerror})") from None
    return folder


def write_config_file(
    path: str | os.PathLike[str],
    kernel: Kernel,
    triton_version: str,
    configs: Mapping[int, Config],
    *,
    overwrite: bool = False,
    merge: bool = False,
) -> Path:
    """Write a tuned-config file of ``kernel`` atomically (its text is
    ``kernel.render_file``'s).

    The text goes to a temporary file in the same directory, is fsynced, and replaces
    ``path`` with :func:`os.replace`; if anything fails, an existing file is untouched and
    the temporary file is removed.

    Without ``overwrite`` or ``merge`` an existing file is refused. With ``overwrite`` it is
    replaced and the batch sizes keep the order of ``configs``. With ``merge`` the existing
    file is read (and must be valid), its batch sizes are kept, ours replace or add to
    them, and **all batch-size keys are written in ascending numeric order** (the order of
    vLLM's own files); ``triton_version`` becomes ours. Merging into a file that does not
    exist writes ``configs`` sorted the same way.

    Args:
        path: the file to write; its directory must exist and be writable.
        kernel: the kernel whose file format it is.
        triton_version: the Triton version that tuned ``configs``.
        configs: batch size M -> config.
        overwrite: replace an existing file.
        merge: update an existing file's batch sizes.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ExportError: the file exists and neither flag is given, both flags are given, the
            directory is missing or not writable, the existing file cannot be merged, the
            configs cannot be rendered, or writing fails.
    """
    path = Path(path)
    if overwrite and merge:
        raise ExportError("pass either --overwrite or --merge, not both")
    directory = path.parent
    if not directory.exists():
        raise ExportError(f"directory {directory} does not exist")
    if not directory.is_dir():
        raise ExportError(f"{directory} is not a directory, so {path.name} cannot go in it")
    if path.is_dir():
        raise ExportError(f"{path} is a directory, not a config file")

    exists = path.exists()
    if exists and not (overwrite or merge):
        raise ExportError(
            f"{path} exists; pass --overwrite to replace it or --merge to update its batch sizes"
        )
    ours = dict(configs)
    if merge:
        combined = dict(kernel.read_file(path)[1]) if exists else {}
        combined.update(ours)
        ours = {M: combined[M] for M in sorted(combined)}
    text = kernel.render_file(triton_version, ours)

    if not os.access(directory, os.W_OK | os.X_OK):
        raise ExportError(f"directory {directory} is not writable")
    try:
        fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise ExportError(
            f"directory {directory} is not writable: {exc.strerror or exc}"
        ) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, _file_mode(path if exists else None))
        os.replace(tmp_name, path)
    except BaseException as exc:
        try:
            os.unlink(tmp_name)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise ExportError(f"{path}: cannot write: {exc.strerror or exc}") from exc
        raise
    _fsync_directory(directory)
    return path


def _file_mode(existing: Path | None) -> int:
    """Keep an existing file's permissions; give a new one the usual umask-based ones."""
    if existing is not None:
        try:
            return existing.stat().st_mode & 0o7777
        except OSError:
            pass
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _fsync_directory(directory: Path) -> None:
    # Makes the rename durable; not every platform or filesystem allows it.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def nearest_config(configs: Mapping[int, Config], M: int) -> Config:
    """The config vLLM uses for batch size ``M``.

    vLLM takes the key nearest to M by absolute difference; on a tie the first such key
    in file (insertion) order wins, which is what :func:`min` does over a dict.

    Raises:
        ExportError: ``configs`` is empty.
    """
    if not configs:
        raise ExportError(f"no configs to choose from for batch size {M}")
    return configs[min(configs, key=lambda key: abs(key - M))]
