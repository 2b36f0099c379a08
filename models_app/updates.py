"""Updates: whether Civitai has a newer version of a model than the one the library holds, or the
Hugging Face branch a model was downloaded from another file at its path.

A library model knows its Civitai model and version from its info sidecar. Civitai is asked once per
Civitai model for its versions; the newest is kept in CivitaiModel, and selectors.with_update compares
each library model with it, so a newer version downloaded since counts at once, without asking again.
A model without Civitai info that was downloaded from a Hugging Face branch is asked of the hub
(hub_updates.py), by its SHA256.
"""

from __future__ import annotations

import enum
from typing import Any

from downloads_app import hub_updates
from downloads_app.models import DownloadedFile
from models_app import civitai_api
from models_app.civitai_api import LookupFailed, ShouldStop
from models_app.models import CivitaiModel, LibraryVersion, ModelFile
from models_app.selectors import has_update


class Outcome(enum.Enum):
    UPDATE = "a newer version is out"
    CURRENT = "the newest version, or the newest is in the library too"
    GONE = "no longer on Civitai"


def newest_of(versions: list[Any]) -> dict[str, Any] | None:
    """The version Civitai shows first on the model's page: `index` 0, else the first listed."""
    listed = [v for v in versions if isinstance(v, dict) and isinstance(v.get("id"), int)]
    published = [v for v in listed if v.get("status", "Published") == "Published"]
    ordered = sorted(published, key=lambda v: v["index"] if isinstance(v.get("index"), int) else 0)
    return ordered[0] if ordered else None


def newest_version(civitai_model_id: int, should_stop: ShouldStop) -> CivitaiModel | None:
    """Asks Civitai for the model's versions and keeps the newest; None when Civitai no longer has it."""
    data = civitai_api.ask(f"/api/v1/models/{civitai_model_id}", should_stop)
    known = CivitaiModel.objects.filter(model_id=civitai_model_id)
    before = known.values_list("version_id", flat=True).first()
    if data is None:
        if known.delete()[0]:
            LibraryVersion.renew()  # the library page keeps its count of updates under this
        return None
    newest = newest_of(data.get("modelVersions") or [])
    if newest is None:
        raise LookupFailed("Civitai lists no published version of this model.")
    row, _ = CivitaiModel.objects.update_or_create(
        model_id=civitai_model_id,
        defaults={
            "version_id": newest["id"],
            "version_name": str(newest.get("name") or "")[:300],
            "base_model": str(newest.get("baseModel") or "")[:100],
        },
    )
    if row.version_id != before:
        LibraryVersion.renew()
    return row


def check(model: ModelFile, asked: dict[int, CivitaiModel | None], should_stop: ShouldStop) -> Outcome:
    """Whether `model` has an update; `asked` keeps Civitai's answers for the rest of the job, since
    several files (fp16 and fp32, a copy) can be of one Civitai model."""
    assert model.civitai_model_id is not None  # models_for only gives models with Civitai info
    if model.civitai_model_id not in asked:
        asked[model.civitai_model_id] = newest_version(model.civitai_model_id, should_stop)
    if asked[model.civitai_model_id] is None:
        return Outcome.GONE
    # What the library page will show, by the same rule: not the newest, which the library lacks too.
    return Outcome.UPDATE if has_update(model) else Outcome.CURRENT


def check_on_the_hub(model: ModelFile, asked: dict[str, bool]) -> tuple[Outcome, bool]:
    """Whether `model`, downloaded from a Hugging Face branch, has an update there, and whether the hub
    changed since the check before; `asked` keeps the hub's answers by SHA256 for the rest of the job
    (a copy of the file asks nothing more)."""
    if model.sha256 not in asked:
        downloaded = DownloadedFile.objects.filter(sha256=model.sha256).first()
        if downloaded is None:  # models_for gives only those it knows: forgotten since, in the admin
            return Outcome.CURRENT, False
        try:
            asked[model.sha256] = hub_updates.check(downloaded)
        except hub_updates.HubCheckFailed as exc:
            raise LookupFailed(str(exc)) from None
    return Outcome.UPDATE if has_update(model) else Outcome.CURRENT, asked[model.sha256]
