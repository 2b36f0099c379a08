"""The model files a ComfyUI workflow needs, read from the workflow as ComfyUI saves it (with the links
its templates give in `models`), in its API format, or from a PNG that ComfyUI wrote it into; and the
models an image made with A1111, Forge or on Civitai names in its generation parameters (by hash).
No HTTP and no database here."""

from __future__ import annotations

import io
import json
import re
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
    """A model file the workflow names, as its loader node lists it (`sdxl/model.safetensors`); or, in
    an image's parameters, what the image calls a model (`pepper`, not `exact`), with its AutoV2 hash."""

    name: str
    folder_type: str = ""  # "" when only a custom node names it
    url: str = ""
    sha256: str = ""
    autov2: str = ""  # the first 10 hex digits of its SHA256, as A1111 writes it
    civitai_version_id: int = 0
    exact: bool = True  # `name` is the file the loader opens: the library must hold it under that name

    @property
    def sub_folder(self) -> str:
        return self.name.rpartition("/")[0]

    @property
    def filename(self) -> str:
        return self.name.rpartition("/")[2]

    @property
    def destination(self) -> tuple[str, str]:
        """The subfolder and file name its download takes: where the loader opens it; a model an image
        names keeps the link's own file name ("", "")."""
        return (self.sub_folder, self.filename) if self.exact else ("", "")

    @property
    def search_words(self) -> str:
        """What to search Civitai for, to find it: its name without folder, extension or underscores."""
        if self.name == self.autov2:  # an image that gives a hash and no name
            return ""
        stem = self.filename.rsplit(".", 1)[0] if self.exact else self.filename
        return re.sub(r"[_\-.]+", " ", stem).strip()


def models_in_workflow(data: bytes) -> list[WorkflowModel]:
    """Each model file the workflow (or the image) needs, once, in the order it names them."""
    if len(data) > MAX_WORKFLOW_BYTES:
        raise WorkflowError("That file is over 20 MB: a workflow is much smaller.")
    if not data.startswith(IMAGE_SIGNATURES):
        return _merged(_in_workflow_text(_decoded(data)))
    texts = _texts_in_image(data)
    if text := texts.get("workflow") or texts.get("prompt"):
        return _merged(_in_workflow_text(text))
    if parameters := texts.get("parameters"):
        return _merged(list(_in_parameters(parameters)))
    raise WorkflowError(
        "That image holds no workflow: only images ComfyUI saved do, or parameters A1111, Forge or Civitai wrote."
    )


def _in_workflow_text(text: str) -> list[WorkflowModel]:
    try:
        workflow = json.loads(text)
    except ValueError:
        raise WorkflowError("That is not a ComfyUI workflow: it is not JSON.") from None
    if isinstance(workflow, dict) and isinstance(workflow.get("nodes"), list):
        return list(_in_saved_workflow(workflow))
    if isinstance(workflow, dict) and any(_is_api_node(node) for node in workflow.values()):
        return list(_in_api_workflow(workflow))
    raise WorkflowError("That JSON is not a ComfyUI workflow: it has no nodes.")


def _decoded(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise WorkflowError(
            "That is not a ComfyUI workflow: save it from ComfyUI as JSON, or drop an image it made."
        ) from None


IMAGE_SIGNATURES = (PNG_SIGNATURE, b"\xff\xd8\xff", b"RIFF")
EXIF_IFD, USER_COMMENT = 0x8769, 0x9286
# ComfyUI's animated WebP keeps "workflow:{…}" in EXIF's Make tag and "prompt:{…}" in Model, the tags
# below them taking any further entries (its SaveAnimatedWEBP).
COMFYUI_EXIF_TAGS = (0x0110, 0x010F, 0x010E, 0x010D)


def _texts_in_image(data: bytes) -> dict[str, str]:
    """What an image says of how it was made: a PNG's text chunks (ComfyUI's "workflow" and "prompt",
    A1111's "parameters"), ComfyUI's EXIF tags of a WebP, or the EXIF comment A1111 and Forge write into
    a JPEG or WebP."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            # A PNG's text chunks before its pixels, as ComfyUI and A1111 write them: Image.text would
            # decode the pixels to look for more after them.
            texts = {str(key): value for key, value in image.info.items() if isinstance(value, str)}
            # The same for a PNG's EXIF, looked for after its pixels too; a JPEG's or WebP's comes first.
            exif = image.getexif() if image.format != "PNG" else Image.Exif()
            comment = exif.get_ifd(EXIF_IFD).get(USER_COMMENT)
    except Image.DecompressionBombError:
        raise WorkflowError("That image is too large to be read.") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise WorkflowError("That image cannot be read.") from None
    for tag in COMFYUI_EXIF_TAGS:
        key, colon, text = str(exif.get(tag, "")).partition(":")
        if colon and key in ("workflow", "prompt"):
            texts.setdefault(key, text)
    if isinstance(comment, bytes) and "parameters" not in texts:
        texts["parameters"] = _user_comment(comment)
    return {key: str(value) for key, value in texts.items()}


def _user_comment(comment: bytes) -> str:
    """An EXIF UserComment: an 8-byte code, then the text (UTF-16 after "UNICODE", of either byte order)."""
    code, text = comment[:8], comment[8:]
    if code.startswith(b"UNICODE"):
        big_endian = len(text) > 1 and text[0] == 0
        return text.decode("utf-16-be" if big_endian else "utf-16-le", errors="replace")
    return text.decode("utf-8", errors="replace")


def _is_api_node(node: object) -> bool:
    return isinstance(node, dict) and isinstance(node.get("class_type"), str)


def _in_saved_workflow(workflow: dict[str, Any]) -> Iterator[WorkflowModel]:
    yield from _listed(workflow.get("models"))
    subgraphs = (workflow.get("definitions") or {}).get("subgraphs") or []
    nodes = list(workflow["nodes"]) + [
        node for graph in subgraphs if isinstance(graph, dict) for node in graph.get("nodes") or []
    ]
    group_nodes = (workflow.get("extra") or {}).get("groupNodes")
    for node in nodes:
        if not isinstance(node, dict) or node.get("mode") in SKIPPED_MODES:
            continue
        properties = node.get("properties")
        if isinstance(properties, dict):
            yield from _listed(properties.get("models"))
        if (inner := _grouped(node, group_nodes)) is not None:
            yield from _in_group_node(node.get("widgets_values"), inner)
            continue
        folder_type = NODE_FOLDERS.get(str(node.get("type")), "")
        for name in _model_names(node.get("widgets_values")):
            yield WorkflowModel(name, folder_type)


GROUP_NODE_PREFIXES = ("workflow>", "workflow/")  # the second before ComfyUI's frontend 1.2.63


def _grouped(node: dict[str, Any], group_nodes: object) -> list[dict[str, Any]] | None:
    """The nodes a legacy group node (before subgraphs) stands for, as the workflow's
    `extra.groupNodes` defines them; None for any other node."""
    node_type = str(node.get("type"))
    if not isinstance(group_nodes, dict) or not node_type.startswith(GROUP_NODE_PREFIXES):
        return None
    group = group_nodes.get(node_type[len("workflow>") :])  # either prefix
    if not isinstance(group, dict) or not isinstance(group.get("nodes"), list):
        return None
    return [inner for inner in group["nodes"] if isinstance(inner, dict)]


def _in_group_node(values: object, inner: list[dict[str, Any]]) -> Iterator[WorkflowModel]:
    """A group node's values are its inner nodes' values, one node's after another's: each name takes
    the folder of the loader it belongs to. When they do not add up (a widget linked inside the group
    has none), a name takes the folder of the inner loader that was grouped with it, if one was."""
    sizes = [
        len(part["widgets_values"]) if isinstance(part.get("widgets_values"), list) else 0 for part in inner
    ]
    if isinstance(values, list) and sum(sizes) == len(values):
        start = 0
        for part, size in zip(inner, sizes, strict=True):
            if part.get("mode") not in SKIPPED_MODES:
                folder_type = NODE_FOLDERS.get(str(part.get("type")), "")
                yield from (
                    WorkflowModel(name, folder_type) for name in _model_names(values[start : start + size])
                )
            start += size
        return
    grouped_with = {
        name: NODE_FOLDERS[str(part.get("type"))]
        for part in inner
        if str(part.get("type")) in NODE_FOLDERS
        for name in _model_names(part.get("widgets_values"))
    }
    for name in _model_names(values):
        yield WorkflowModel(name, grouped_with.get(name, ""))


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


# A1111's infotext: the last line's "Key: value" pairs, a value quoted when it holds commas
# (modules/infotext_utils.py); Civitai adds its resources there as a JSON list.
PARAMETER = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
AUTOV2 = re.compile(r"[0-9a-fA-F]{10}")
PROMPT_LORA = re.compile(r"<(?:lora|lyco):([^:>]+)")
CIVITAI_TYPES = {
    "checkpoint": "checkpoints",
    "lora": "loras",
    "locon": "loras",
    "lycoris": "loras",
    "embed": "embeddings",
    "textualinversion": "embeddings",
    "vae": "vae",
    "controlnet": "controlnet",
    "upscaler": "upscale_models",
}


def _in_parameters(text: str) -> Iterator[WorkflowModel]:
    prompt, _, settings_line = text.strip().rpartition("\n")
    resources, settings_line = _civitai_resources(settings_line)
    values = {key.strip(): _unquoted(value) for key, value in PARAMETER.findall(settings_line)}
    if not values and not resources:
        raise WorkflowError("That image's parameters name no model.")
    for name_key, hash_key, folder_type in (
        ("Model", "Model hash", "checkpoints"),
        ("VAE", "VAE hash", "vae"),
    ):
        autov2 = values.get(hash_key, "")
        if AUTOV2.fullmatch(autov2) or values.get(name_key):
            yield WorkflowModel(
                values.get(name_key) or autov2, folder_type, autov2=_autov2(autov2), exact=False
            )
    for list_key, folder_type in (("Lora hashes", "loras"), ("TI hashes", "embeddings")):
        for pair in values.get(list_key, "").split(","):
            name, _, autov2 = pair.rpartition(":")
            if name.strip() and AUTOV2.fullmatch(autov2.strip()):
                yield WorkflowModel(name.strip(), folder_type, autov2=_autov2(autov2), exact=False)
    for name in PROMPT_LORA.findall(prompt):
        yield WorkflowModel(name.strip(), "loras", exact=False)
    for resource in resources:
        version = resource.get("modelVersionId")
        if isinstance(version, int) and version > 0:
            name = str(resource.get("modelName") or f"Civitai version {version}")
            folder_type = CIVITAI_TYPES.get(str(resource.get("type", "")).lower(), "")
            yield WorkflowModel(name, folder_type, civitai_version_id=version, exact=False)


def _civitai_resources(line: str) -> tuple[list[dict[str, Any]], str]:
    """The "Civitai resources" list of the settings line, and the line without it."""
    start = line.find("Civitai resources:")
    if start < 0:
        return [], line
    at = start + len("Civitai resources:")
    at += len(line[at:]) - len(line[at:].lstrip())
    try:
        resources, end = json.JSONDecoder().raw_decode(line, at)
    except ValueError:
        return [], line
    rest = line[:start] + line[end:].lstrip(", ")
    return [r for r in resources if isinstance(r, dict)] if isinstance(resources, list) else [], rest


def _unquoted(value: str) -> str:
    value = value.strip()
    if len(value) > 1 and value[0] == value[-1] == '"':
        try:
            return str(json.loads(value))
        except ValueError:
            return value[1:-1]
    return value


def _autov2(value: str) -> str:
    value = value.strip().lower()
    return value if AUTOV2.fullmatch(value) else ""


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
        before.autov2 or model.autov2,
        before.civitai_version_id or model.civitai_version_id,
        before.exact and model.exact,
    )
