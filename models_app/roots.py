"""Where the models live: ComfyUI's folder map (DESIGN.md §4).

A model is addressed as (folder type, path index, relative path), where the path index points into the
ordered list of folders configured for that type. Everything that touches a model path goes through
`resolve_model_path`, which refuses anything that leaves its root.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Protocol

import yaml
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

LEGACY_TYPES = {"unet": "diffusion_models", "clip": "text_encoders", "t2i_adapter": "controlnet"}
# ComfyUI's own folders, in its order; the first of each is where ComfyUI puts new files.
COMFYUI_DEFAULT_FOLDERS: dict[str, tuple[str, ...]] = {
    "checkpoints": ("checkpoints",),
    "loras": ("loras",),
    "vae": ("vae",),
    "text_encoders": ("text_encoders", "clip"),
    "diffusion_models": ("unet", "diffusion_models"),
    "clip_vision": ("clip_vision",),
    "style_models": ("style_models",),
    "embeddings": ("embeddings",),
    "diffusers": ("diffusers",),
    "vae_approx": ("vae_approx",),
    "controlnet": ("controlnet", "t2i_adapter"),
    "gligen": ("gligen",),
    "upscale_models": ("upscale_models",),
    "latent_upscale_models": ("latent_upscale_models",),
    "hypernetworks": ("hypernetworks",),
    "photomaker": ("photomaker",),
    "classifiers": ("classifiers",),
    "model_patches": ("model_patches",),
    "audio_encoders": ("audio_encoders",),
}
# Keys of extra_model_paths.yaml that name folders of something other than models.
NON_MODEL_TYPES = frozenset({"configs", "custom_nodes"})


class PathOutsideRoot(ValueError):
    """A path that is not inside the configured model folders."""


class UnknownRoot(LookupError):
    """A folder type or path index that is not configured."""


class RootNotThere(OSError):
    """A configured model folder that is not on disk, nor the folder it would be made in."""


class RootsConfigError(ValueError):
    """The settings or a yaml file that say where the models are cannot be read; says which and why."""


@dataclass(frozen=True)
class ModelRoots:
    """Folder type → ordered list of absolute folders."""

    folders: dict[str, tuple[Path, ...]]

    def types(self) -> list[str]:
        return list(self.folders)

    def get(self, folder_type: str, path_index: int) -> Path:
        try:
            paths = self.folders[folder_type]
            if path_index < 0:
                raise IndexError(path_index)
            return paths[path_index]
        except (KeyError, IndexError):
            raise UnknownRoot(f"No model folder {folder_type}/{path_index} is configured.") from None

    def __iter__(self):  # type: ignore[no-untyped-def]
        for folder_type, paths in self.folders.items():
            for index, path in enumerate(paths):
                yield folder_type, index, path


class _RootsBuilder:
    """Default folders (`is_default: true`) go first, in the order given; the rest follow."""

    def __init__(self) -> None:
        self.folders: dict[str, list[Path]] = {}
        self.defaults: dict[str, int] = {}

    def add(self, folder_type: str, path: Path, *, is_default: bool = False) -> None:
        folder_type = LEGACY_TYPES.get(folder_type, folder_type)
        if folder_type in NON_MODEL_TYPES:
            return
        path = Path(os.path.abspath(path))
        paths = self.folders.setdefault(folder_type, [])
        if path in paths:
            if not is_default or paths.index(path) < self.defaults.get(folder_type, 0):
                return
            paths.remove(path)
        if is_default:
            paths.insert(self.defaults.get(folder_type, 0), path)
            self.defaults[folder_type] = self.defaults.get(folder_type, 0) + 1
        else:
            paths.append(path)

    def build(self) -> ModelRoots:
        return ModelRoots({t: tuple(p) for t, p in self.folders.items() if p})


# Where WSL mounts the Windows drives: a ComfyUI set up on Windows names its folders C:\…
WSL_DRIVES = Path("/mnt")
_WINDOWS_PATH = re.compile(r"^([A-Za-z]):[\\/]")


def _expand(value: str) -> str:
    """`~` and `$VARS` expanded, and on WSL a Windows path (`C:\\ComfyUI\\models`) turned into the path
    of that drive's mount (`/mnt/c/ComfyUI/models`)."""
    value = os.path.expandvars(os.path.expanduser(value))
    windows = _WINDOWS_PATH.match(value) if os.sep == "/" else None
    if windows and (drive := WSL_DRIVES / windows.group(1).lower()).is_dir():
        return str(drive / value[3:].replace("\\", "/"))
    return value


def _split_paths(value: object) -> list[str]:
    """One path, or several lines of a YAML `|` block. A ` #` starts a comment people leave in blocks."""
    if value is None:
        return []
    lines = []
    for line in str(value).splitlines():
        line = line.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            lines.append(line)
    return lines


def parse_extra_model_paths(text: str, yaml_dir: Path) -> list[tuple[str, Path, bool]]:
    """Parses ComfyUI's extra_model_paths.yaml into (folder type, absolute path, is_default) entries.

    Follows ComfyUI's utils/extra_config.py: top-level keys are free section names; `base_path` is
    expanded and made absolute against the yaml file's folder; every other key is a folder type.
    """
    config = yaml.safe_load(text) or {}
    if not isinstance(config, dict):
        raise ValueError("it must map section names to folder settings")
    entries: list[tuple[str, Path, bool]] = []
    for section in config.values():
        if not isinstance(section, dict):
            continue
        section = dict(section)
        base_path = section.pop("base_path", None)
        is_default = bool(section.pop("is_default", False))
        base = yaml_dir
        if base_path:
            base = Path(_expand(str(base_path)))
            if not base.is_absolute():
                base = yaml_dir / base
        windows_base = bool(base_path and _WINDOWS_PATH.match(str(base_path)))
        for folder_type, value in section.items():
            for path in _split_paths(value):
                full = Path(_expand(path.replace("\\", "/") if windows_base else path))
                entries.append((str(folder_type), full if full.is_absolute() else base / full, is_default))
    return entries


def parse_model_roots_setting(value: str) -> list[tuple[str, Path]]:
    """`type=path;type=path` (MM_MODEL_ROOTS)."""
    entries = []
    for item in value.split(";"):
        item = item.strip()
        if not item:
            continue
        folder_type, sep, path = item.partition("=")
        if not sep or not folder_type.strip() or not path.strip():
            raise RootsConfigError(f"MM_MODEL_ROOTS entries look like type=path, not {item!r}.")
        entries.append((folder_type.strip(), Path(_expand(path.strip()))))
    return entries


def comfyui_folder(comfyui_path: str) -> Path:
    """The ComfyUI install that MM_COMFYUI_PATH names, as build_roots reads it."""
    return Path(_expand(comfyui_path)).resolve()


def _read_extra_model_paths(yaml_file: Path) -> list[tuple[str, Path, bool]]:
    try:
        return parse_extra_model_paths(yaml_file.read_text(encoding="utf-8"), yaml_file.resolve().parent)
    except OSError as exc:
        raise RootsConfigError(f"{yaml_file}: cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise RootsConfigError(f"{yaml_file}: is not UTF-8 text") from None
    except yaml.MarkedYAMLError as exc:
        where = f"line {exc.problem_mark.line + 1}: " if exc.problem_mark else ""
        raise RootsConfigError(f"{yaml_file}: is not valid YAML ({where}{exc.problem})") from None
    except (yaml.YAMLError, ValueError) as exc:
        raise RootsConfigError(f"{yaml_file}: {exc}") from None


def _yaml_files(comfyui_path: str, extra_model_paths: str) -> list[Path]:
    """The extra_model_paths.yaml files in the ComfyUI folder, then those of MM_EXTRA_MODEL_PATHS."""
    found = sorted(comfyui_folder(comfyui_path).glob("extra_model_paths.y*ml")) if comfyui_path else []
    return found + [Path(_expand(p)) for p in extra_model_paths.split(os.pathsep) if p.strip()]


def roots_sources() -> list[str]:
    """What get_roots read, in its order, for people checking why a folder is (not) there."""
    sources = [f"ComfyUI at {comfyui_folder(settings.MM_COMFYUI_PATH)}"] if settings.MM_COMFYUI_PATH else []
    sources += [str(f) for f in _yaml_files(settings.MM_COMFYUI_PATH, settings.MM_EXTRA_MODEL_PATHS)]
    return sources + (["MM_MODEL_ROOTS"] if settings.MM_MODEL_ROOTS.strip() else [])


def build_roots(*, comfyui_path: str = "", extra_model_paths: str = "", model_roots: str = "") -> ModelRoots:
    builder = _RootsBuilder()
    if comfyui_path:
        comfy = comfyui_folder(comfyui_path)
        for folder_type, names in COMFYUI_DEFAULT_FOLDERS.items():
            for name in names:
                builder.add(folder_type, comfy / "models" / name)
    for yaml_file in _yaml_files(comfyui_path, extra_model_paths):
        for folder_type, path, is_default in _read_extra_model_paths(yaml_file):
            builder.add(folder_type, path, is_default=is_default)
    for folder_type, path in parse_model_roots_setting(model_roots):
        builder.add(folder_type, path)
    return builder.build()


@cache
def get_roots() -> ModelRoots:
    return build_roots(
        comfyui_path=settings.MM_COMFYUI_PATH,
        extra_model_paths=settings.MM_EXTRA_MODEL_PATHS,
        model_roots=settings.MM_MODEL_ROOTS,
    )


def root_to_write(folder_type: str, path_index: int) -> Path:
    """The model folder a download or a move writes into. One that is not there is made when the folder
    it goes in is (a ComfyUI install with no models/text_encoders yet); one further away is not: it is
    most likely on a drive that is not mounted, and writing there would fill the disk under it."""
    root = get_roots().get(folder_type, path_index)
    if not root.is_dir() and not root.parent.is_dir():
        raise RootNotThere(f"{root} is not there, nor the folder it goes in: is its drive mounted?")
    return root


@receiver(setting_changed)
def _forget_roots(*, setting: str, **kwargs: object) -> None:
    if setting.startswith("MM_"):
        get_roots.cache_clear()


def clean_relative_path(relative_path: str) -> str:
    """Normalises a user-given relative path (posix separators) or refuses one that climbs out."""
    relative_path = relative_path.replace("\\", "/")
    parts = PurePosixPath(relative_path).parts
    if not relative_path or relative_path.startswith("/") or any(p in {"..", ""} for p in parts):
        raise PathOutsideRoot(f"{relative_path!r} is not a path inside a model folder.")
    return "/".join(p for p in parts if p != ".")


def resolve_model_path(folder_type: str, path_index: int, relative_path: str) -> Path:
    """The absolute path of a model, checked to lie inside its root.

    The name may not climb out (no `..`, no absolute path). Its resolved location must stay inside
    the root too, unless the way there passes a symlink inside the root: people link big folders in,
    and the scanner follows those links, so a model found through one can be opened through it.
    """
    root = get_roots().get(folder_type, path_index)
    candidate = root / clean_relative_path(relative_path)
    if candidate.resolve().is_relative_to(root.resolve()):
        return candidate
    step = candidate
    while step != root:
        if step.is_symlink():
            return candidate
        step = step.parent
    raise PathOutsideRoot(f"{relative_path!r} is outside the {folder_type} folder.")


class PlacedModel(Protocol):
    folder_type: str
    path_index: int
    relative_path: str


def model_path(model: PlacedModel) -> Path:
    """Where a library model's file is, checked as resolve_model_path checks it."""
    return resolve_model_path(model.folder_type, model.path_index, model.relative_path)
