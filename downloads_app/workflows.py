"""The model files a ComfyUI workflow needs, read from the workflow as ComfyUI saves it (with the links
its templates give in `models`), in its API format, or from a PNG that ComfyUI wrote it into.
No HTTP and no database here."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from PIL import Image, UnidentifiedImageError

from models_app.extensions import MODEL_EXTENSIONS
from models_app.roots import LEGACY_TYPES

MAX_WORKFLOW_BYTES = 20 * 1024 * 1024
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# The folder each of ComfyUI's own loader nodes lists its files from (comfy's nodes.py and comfy_extras).
# A custom node's model is still found by its file name, in whichever folder the library holds it.
NODE_FOLDERS = {
    "CheckpointLoaderSimple": "checkpoints",
    "CheckpointLoader": "checkpoints",
    "ImageOnlyCheckpointLoader": "checkpoints",
    "unCLIPCheckpointLoader": "checkpoints",
    "LoraLoader": "loras",
    "LoraLoaderModelOnly": "loras",
    "VAELoader": "vae",
    "ControlNetLoader": "controlnet",
    "DiffControlNetLoader": "controlnet",
    "UNETLoader": "diffusion_models",
    "CLIPLoader": "text_encoders",
    "DualCLIPLoader": "text_encoders",
    "TripleCLIPLoader": "text_encoders",
    "QuadrupleCLIPLoader": "text_encoders",
    "CLIPVisionLoader": "clip_vision",
    "UpscaleModelLoader": "upscale_models",
    "StyleModelLoader": "style_models",
    "GLIGENLoader": "gligen",
    "HypernetworkLoader": "hypernetworks",
    "PhotoMakerLoader": "photomaker",
}
SKIPPED_MODES = {2, 4}  # muted ("never") and bypassed nodes do not run: their models are not needed


class WorkflowError(ValueError):
    """Why a file is not a workflow this can read."""


@dataclass(frozen=True)
class WorkflowModel:
    """A model file the workflow names, as its loader node lists it (`sdxl/model.safetensors`)."""

    name: str
    folder_type: str = ""  # "" when only a custom node names it
    url: str = ""
    sha256: str = ""

    @property
    def sub_folder(self) -> str:
        return self.name.rpartition("/")[0]

    @property
    def filename(self) -> str:
        return self.name.rpartition("/")[2]


def models_in_workflow(data: bytes) -> list[WorkflowModel]:
    """Each model file the workflow needs, once, in the order the workflow names them."""
    if len(data) > MAX_WORKFLOW_BYTES:
        raise WorkflowError("That file is over 20 MB: a workflow is much smaller.")
    text = _workflow_text_in_png(data) if data.startswith(PNG_SIGNATURE) else _decoded(data)
    try:
        workflow = json.loads(text)
    except ValueError:
        raise WorkflowError("That is not a ComfyUI workflow: it is not JSON.") from None
    if isinstance(workflow, dict) and isinstance(workflow.get("nodes"), list):
        found = list(_in_saved_workflow(workflow))
    elif isinstance(workflow, dict) and any(_is_api_node(node) for node in workflow.values()):
        found = list(_in_api_workflow(workflow))
    else:
        raise WorkflowError("That JSON is not a ComfyUI workflow: it has no nodes.")
    return _merged(found)


def _decoded(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise WorkflowError(
            "That is not a ComfyUI workflow: save it from ComfyUI as JSON, or drop a PNG it made."
        ) from None


def _workflow_text_in_png(data: bytes) -> str:
    """The workflow ComfyUI writes into each PNG it saves (text chunks "workflow", and "prompt" for its
    API format)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            text = getattr(image, "text", {})
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise WorkflowError("That PNG cannot be read.") from None
    if not (found := text.get("workflow") or text.get("prompt")):
        raise WorkflowError("That image holds no ComfyUI workflow: only images ComfyUI saved do.")
    return str(found)


def _is_api_node(node: object) -> bool:
    return isinstance(node, dict) and isinstance(node.get("class_type"), str)


def _in_saved_workflow(workflow: dict[str, Any]) -> Iterator[WorkflowModel]:
    yield from _listed(workflow.get("models"))
    subgraphs = (workflow.get("definitions") or {}).get("subgraphs") or []
    nodes = list(workflow["nodes"]) + [
        node for graph in subgraphs if isinstance(graph, dict) for node in graph.get("nodes") or []
    ]
    for node in nodes:
        if not isinstance(node, dict) or node.get("mode") in SKIPPED_MODES:
            continue
        properties = node.get("properties")
        if isinstance(properties, dict):
            yield from _listed(properties.get("models"))
        folder_type = NODE_FOLDERS.get(str(node.get("type")), "")
        for name in _model_names(node.get("widgets_values")):
            yield WorkflowModel(name, folder_type)


def _in_api_workflow(workflow: dict[str, Any]) -> Iterator[WorkflowModel]:
    for node in workflow.values():
        if _is_api_node(node):
            folder_type = NODE_FOLDERS.get(node["class_type"], "")
            for name in _model_names(node.get("inputs")):
                yield WorkflowModel(name, folder_type)


def _listed(entries: object) -> Iterator[WorkflowModel]:
    """The `models` a template lists, with where each goes and where to get it."""
    if not isinstance(entries, list):
        return
    for entry in entries:
        if not isinstance(entry, dict) or not (name := _model_name(entry.get("name"))):
            continue
        url = entry.get("url")
        sha256 = str(entry.get("hash") or "") if str(entry.get("hash_type", "")).lower() == "sha256" else ""
        yield WorkflowModel(
            name,
            _folder_type(entry.get("directory")),
            url if isinstance(url, str) and url.startswith(("https://", "http://")) else "",
            sha256.lower() if len(sha256) == 64 else "",
        )


def _model_names(values: object) -> Iterator[str]:
    """The values of a node's widgets or inputs that name a model file, also inside a custom node's
    lists and groups (a stack of LoRAs)."""
    if isinstance(values, dict):
        values = list(values.values())
    if not isinstance(values, list):
        return
    for value in values:
        if isinstance(value, (dict, list)):
            yield from _model_names(value)
        elif name := _model_name(value):
            yield name


def _model_name(value: object) -> str:
    if not isinstance(value, str) or len(value) > 1024:
        return ""
    name = value.strip().replace("\\", "/")  # as saved on Windows
    stem, dot, extension = name.rpartition(".")
    if not stem or not dot or f".{extension.lower()}" not in MODEL_EXTENSIONS:
        return ""
    return name


def _folder_type(directory: object) -> str:
    if not isinstance(directory, str):
        return ""
    directory = directory.strip().strip("/")
    return LEGACY_TYPES.get(directory, directory)


def _merged(found: list[WorkflowModel]) -> list[WorkflowModel]:
    """One entry a file: a loader node and the `models` list name the same file, one with its folder,
    the other with its link. A custom node's file (no folder known) joins the entry of that name."""
    merged: list[WorkflowModel] = []
    for model in found:
        same = next(
            (
                i
                for i, seen in enumerate(merged)
                if seen.name == model.name
                and (seen.folder_type == model.folder_type or not seen.folder_type or not model.folder_type)
            ),
            None,
        )
        if same is None:
            merged.append(model)
        else:
            merged[same] = _joined(merged[same], model)
    return merged


def _joined(before: WorkflowModel, model: WorkflowModel) -> WorkflowModel:
    return WorkflowModel(
        before.name,
        before.folder_type or model.folder_type,
        before.url or model.url,
        before.sha256 or model.sha256,
    )
