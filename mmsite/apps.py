from __future__ import annotations

from django.apps import AppConfig


class MmsiteConfig(AppConfig):
    name = "mmsite"
    verbose_name = "Site and accounts"
