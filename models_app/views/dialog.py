"""The model dialog and its forms: description, preview, rename / move, delete."""

from __future__ import annotations

from urllib.parse import urlencode

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST

from downloads_app import hub_updates
from downloads_app import selectors as downloads
from downloads_app.models import DownloadedFile
from mmsite.toasts import with_toast
from models_app import selectors, services
from models_app.examples import examples_of
from models_app.headers import training_tags
from models_app.info import civitai_link_set
from models_app.markdown import render_markdown
from models_app.models import ModelFile
from models_app.previews import MAX_PREVIEW_BYTES, PreviewError, fetch_image
from models_app.roots import PathOutsideRoot, UnknownRoot
from models_app.views.common import chosen_folder, model_or_404
from models_app.views.jobs import move_queued


def detail_context(model: ModelFile, *, error: str = "") -> dict[str, object]:
    """What the model dialog and the model page show (the same template, whole or as a partial)."""
    model = selectors.model_with_update(model)  # after an edit it comes from a service, without them
    try:
        absolute_path = services.model_path(model)
    except (PathOutsideRoot, UnknownRoot):  # its folder is no longer configured
        absolute_path = None
    downloaded_from = downloads.downloaded_from(model.sha256)
    return {
        "model": model,
        "absolute_path": absolute_path,
        "civitai_url": settings.MM_CIVITAI_URL.rstrip("/"),
        **(_update_links(model) or _hub_update_links(model, downloaded_from)),
        "other_versions": selectors.other_versions(model),
        "downloaded_from": downloaded_from,
        "hub_branch": hub_updates.branch_of(downloaded_from) if downloaded_from else "",
        "description_html": render_markdown(model.description),
        "training_tags": training_tags(model.metadata),
        "examples": examples_of(model),
        "folders": selectors.folders_to_write(),
        "error": error,
    }


def _hub_update_links(model: ModelFile, downloaded_from: DownloadedFile | None) -> dict[str, str]:
    """The new-download dialog's choices for the newer file on the Hugging Face branch the model came
    from: that file, under the model's own name, replacing it."""
    if downloaded_from is None or not getattr(model, "newer_on_hub", False):
        return {}
    choices = {
        "url": downloaded_from.page_url,
        "folder_type": model.folder_type,
        "path_index": model.path_index,
        "sub_folder": model.sub_folder,
        "filename": model.relative_path.rpartition("/")[2],
        "replaces": model.pk,
        "replace_older": "on",
    }
    return {"update_download_query": urlencode(choices)}


def _update_links(model: ModelFile) -> dict[str, str]:
    """The Civitai page of the newer version of `model`, and the new-download dialog's choices for it:
    that version, beside the model in its folder."""
    newer = selectors.newer_version(model)
    if newer is None:
        return {}
    version = newer[0]
    page = f"{settings.MM_CIVITAI_URL.rstrip('/')}/models/{model.civitai_model_id}?modelVersionId={version}"
    choices = {
        "url": page,
        "version": version,
        "folder_type": model.folder_type,
        "path_index": model.path_index,
        "sub_folder": model.sub_folder,
        "replaces": model.pk,
    }
    return {"update_page": page, "update_download_query": urlencode(choices)}


def render_dialog(
    request: HttpRequest,
    model: ModelFile,
    *,
    error: str = "",
    toast: str = "",
    partial: str = "dialog",
    typed_description: str | None = None,
    typed_url: str = "",
    refresh_card: bool = False,
) -> HttpResponse:
    """The dialog, or one of its forms; a form shown again after an error keeps what was typed in it.
    `refresh_card`: the model's card behind the dialog is drawn again too (a new preview)."""
    context = detail_context(model, error=error)
    context["typed_description"] = model.description if typed_description is None else typed_description
    context["typed_url"] = typed_url
    context["refresh_card"] = refresh_card
    response = render(request, f"models_app/model_detail.html#{partial}", context)
    if error:
        return with_toast(response, error, level="error")
    return with_toast(response, toast) if toast else response


@require_GET
def model_edit(
    request: HttpRequest, folder_type: str, path_index: int, relative_path: str, form: str
) -> HttpResponse:
    if form not in {"description", "move", "delete", "preview", "civitai"}:
        raise Http404("No such form.")
    return render_dialog(
        request, model_or_404(folder_type, path_index, relative_path), partial=f"{form}_form"
    )


@require_POST
def civitai_link_save(
    request: HttpRequest, folder_type: str, path_index: int, relative_path: str
) -> HttpResponse:
    model = model_or_404(folder_type, path_index, relative_path)
    url = request.POST.get("url", "").strip()[:2000]
    try:
        civitai_link_set(model=model, url=url)
    except services.ModelEditError as exc:
        return render_dialog(request, model, error=str(exc), partial="civitai_form", typed_url=url)
    except OSError as exc:  # a folder that cannot be written to, a model gone since the dialog opened
        error = f"The info could not be saved beside the model: {exc.strerror or exc}."
        return render_dialog(request, model, error=error, partial="civitai_form", typed_url=url)
    linked = model_or_404(folder_type, path_index, relative_path)
    return render_dialog(
        request, linked, toast=f"Linked to {linked.civitai_name} on Civitai.", refresh_card=True
    )


@require_POST
def markdown_preview(request: HttpRequest) -> HttpResponse:
    return HttpResponse(render_markdown(request.POST.get("description", "")[:200_000]))


@require_POST
def description_save(
    request: HttpRequest, folder_type: str, path_index: int, relative_path: str
) -> HttpResponse:
    model = model_or_404(folder_type, path_index, relative_path)
    text = request.POST.get("description", "")[:200_000]
    try:
        model = services.description_set(model=model, text=text)
    except services.ModelEditError as exc:
        return render_dialog(
            request, model, error=str(exc), partial="description_form", typed_description=text
        )
    return render_dialog(request, model, toast="Description saved.")


@require_POST
def preview_save(request: HttpRequest, folder_type: str, path_index: int, relative_path: str) -> HttpResponse:
    model = model_or_404(folder_type, path_index, relative_path)
    upload = request.FILES.get("previewFile")
    image_url = request.POST.get("image_url", "")
    try:
        if upload is not None:
            if upload.size and upload.size > MAX_PREVIEW_BYTES:
                raise PreviewError(
                    f"The image is {upload.size / 1048576:.0f} MB; previews may be 20 MB at most."
                )
            data = upload.read()
        elif image_url and image_url in (image.url for image in examples_of(model)):
            data = fetch_image(image_url)
        else:
            raise PreviewError("Choose an image file, or one of the Civitai images.")
        model = services.preview_set(model=model, data=data)
    except (PreviewError, services.ModelEditError) as exc:
        return render_dialog(request, model, error=str(exc), partial="preview_form")
    return render_dialog(request, model, toast="Preview saved.", refresh_card=True)


@require_POST
def model_move(request: HttpRequest, folder_type: str, path_index: int, relative_path: str) -> HttpResponse:
    model = model_or_404(folder_type, path_index, relative_path)
    to_type, to_index = chosen_folder(request, folder_type, path_index)
    sub_folder, name = request.POST.get("sub_folder", ""), request.POST.get("name", "")
    try:
        plan = services.move_plan(
            model=model, folder_type=to_type, path_index=to_index, sub_folder=sub_folder, name=name
        )
        if plan is not None and plan.is_copy:
            task = services.move_start(
                model_ids=[model.pk],
                folder_type=to_type,
                path_index=to_index,
                sub_folder=sub_folder,
                name=name,
            )
            return move_queued(request, task)
        moved = services.model_move(
            model=model, folder_type=to_type, path_index=to_index, sub_folder=sub_folder, name=name
        )
    except services.ModelEditError as exc:
        return render_dialog(request, model, error=str(exc), partial="move_form")
    response = render_dialog(request, moved, toast=f"Moved to {moved.folder_type}/{moved.relative_path}.")
    response["HX-Trigger-After-Settle"] = "libraryChanged"
    return response


@require_POST
def model_delete(request: HttpRequest, folder_type: str, path_index: int, relative_path: str) -> HttpResponse:
    model = model_or_404(folder_type, path_index, relative_path)
    try:
        item = services.model_trash(model=model)
    except services.ModelEditError as exc:
        return render_dialog(request, model, error=str(exc), partial="delete_form")
    response = render(request, "models_app/model_detail.html#deleted", {"item": item, "model_pk": model.pk})
    # Its card goes at once; the counts beside it follow with the library read again.
    response["HX-Trigger-After-Settle"] = "libraryChanged"
    return with_toast(response, f"{item.name} moved to the trash.")
