from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from mmsite.models import ApiToken


class Command(BaseCommand):
    help = "Print a new API token for USERNAME (send it as `Authorization: Bearer <token>`)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="A note to tell tokens apart in the admin.")

    def handle(self, *args: Any, username: str, name: str, **options: Any) -> None:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user named {username!r}. Create one with `manage.py createsuperuser`.")
        _, plain = ApiToken.objects.issue(user=user, name=name)
        self.stdout.write(plain)
