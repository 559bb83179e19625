"""Copying a storage into the record this version writes (``searcher copy``).

Stored trials cannot be changed once finished (Optuna refuses), so a storage written by an
older searcher is brought up to date by copying it: every study with the same name,
attributes and trials (same numbers, times, params and distributions, so the copy resumes
exactly as the original would), and with what older versions did not write:

* each trial's config one attribute per vLLM key (:func:`searcher.store.record.config_attrs`);
* duplicates and trials given back unmeasured stored PRUNED instead of FAIL
  (:data:`searcher.store.record.BOOKKEEPING_STATUSES`; samplers see them as FAIL either way);
* the objective named (:data:`searcher.store.storage.OBJECTIVE_NAME`) where it was not;
* each old claim study (``KERNEL-claim:WHAT``) as a claim trial of the one bookkeeping
  study, :data:`searcher.store.record.CLAIMS_STUDY`.

The original is opened read-only and left as it is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from searcher.store import record
from searcher.errors import StorageError

if TYPE_CHECKING:  # pragma: no cover
    import optuna

__all__ = ["copy_storage"]

_OLD_CLAIM = "-claim:"


def copy_storage(source_url: str, target_url: str) -> list[str]:
    """Copy every study of ``source_url`` into ``target_url`` as this version writes them.

    Returns:
        The names of the studies written to the target, in the source's order.

    Raises:
        StorageError: a storage cannot be opened, or the target already holds studies.
    """
    from searcher.store.storage import open_storage

    source = open_storage(source_url, read_only=True)
    if source_url == target_url:
        raise StorageError(f"--to {target_url} is the storage copied from (--storage); "
                           "copy into a new storage")
    try:
        target = open_storage(target_url)
    except StorageError as exc:  # its message names the URL as --storage: this one is --to
        raise StorageError(str(exc).replace(f"--storage {target_url}", f"--to {target_url}"))
    held = target.get_all_studies()
    if held:
        raise StorageError(f"--to {target_url}: already holds {len(held)} studies (e.g. "
                           f"{held[0].study_name!r}); copy into a new storage")
    written: list[str] = []
    claims = []
    for summary in source.get_all_studies():
        name = summary.study_name
        if _OLD_CLAIM in name:
            claims.append(summary)
            continue
        _copy_study(source, target, summary)
        written.append(name)
    if claims:
        _copy_old_claims(source, target, claims)
        if record.CLAIMS_STUDY not in written:
            written.append(record.CLAIMS_STUDY)
    return written


def _copy_study(source: optuna.storages.BaseStorage, target: optuna.storages.BaseStorage,
                summary: optuna.study.StudySummary) -> None:
    from optuna.trial import TrialState

    from searcher.kernels import KERNELS
    from searcher.store.storage import OBJECTIVE_NAME

    source_id = source.get_study_id_from_name(summary.study_name)
    study_id = target.create_new_study(summary.directions, summary.study_name)
    for key, value in source.get_study_user_attrs(source_id).items():
        target.set_study_user_attr(study_id, key, value)
    system = dict(source.get_study_system_attrs(source_id))
    kernel = KERNELS.get(summary.user_attrs.get(record.KERNEL))
    if kernel is not None:
        system.setdefault("study:metric_names", [OBJECTIVE_NAME])
    for key, value in system.items():
        target.set_study_system_attr(study_id, key, value)
    for t in source.get_all_trials(source_id, deepcopy=True):
        data = t.user_attrs.get(record.CONFIG)
        if kernel is not None and data:
            t.user_attrs = {**t.user_attrs, **record.config_attrs(kernel.config_from_dict(data))}
        if _bookkeeping_failed(t):
            t.state = TrialState.PRUNED
        target.create_new_trial(study_id, template_trial=t)


def _bookkeeping_failed(t: optuna.trial.FrozenTrial) -> bool:
    from optuna.trial import TrialState

    return t.state == TrialState.FAIL and t.user_attrs.get(record.STATUS) in {
        s.value for s in record.BOOKKEEPING_STATUSES}


def _copy_old_claims(source: optuna.storages.BaseStorage, target: optuna.storages.BaseStorage,
                     claims: list[optuna.study.StudySummary]) -> None:
    """Each old claim study becomes a held claim (a COMPLETE trial) of the claims study."""
    import optuna
    from optuna.trial import FrozenTrial, TrialState

    try:
        study_id = target.get_study_id_from_name(record.CLAIMS_STUDY)
    except KeyError:
        study_id = target.create_new_study([optuna.study.StudyDirection.MINIMIZE],
                                           record.CLAIMS_STUDY)
    for summary in claims:
        kernel, what = summary.study_name.split(_OLD_CLAIM, 1)
        attrs = {record.CLAIM: what, record.KERNEL: kernel, **summary.user_attrs}
        target.create_new_trial(study_id, template_trial=FrozenTrial(  # its time unknown
            number=0, state=TrialState.COMPLETE, value=0.0, datetime_start=None,
            datetime_complete=None, params={}, distributions={}, user_attrs=attrs,
            system_attrs={}, intermediate_values={}, trial_id=0))
