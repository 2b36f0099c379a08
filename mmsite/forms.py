from __future__ import annotations

import logging
from typing import Any

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import AuthenticationForm, UserCreationForm

from mmsite import login_throttle
from mmsite.proxies import client_address

logger = logging.getLogger("mm.auth")


class ThrottledLogin(AuthenticationForm):
    """Refuses a login while its address and username have failed too often (login_throttle.py)."""

    def clean(self) -> dict[str, Any]:
        address = client_address(self.request) if self.request else ""
        username = self.cleaned_data.get("username") or ""
        wait = login_throttle.seconds_refused(address, username)
        if wait:
            minutes = -(-wait // 60)
            raise forms.ValidationError(
                f"Too many failed logins as {username} from this address. "
                f"Try again in {minutes} minute{'s' if minutes != 1 else ''}.",
                code="throttled",
            )
        try:
            cleaned = super().clean()
        except forms.ValidationError as error:
            if error.code == "invalid_login":
                # One line per failure, with the client's address: what fail2ban and the like read.
                logger.warning("failed login as %r from %s", username, address)
                login_throttle.record_failure(address, username)
            raise
        login_throttle.forget_failures(address, username)
        return cleaned


class ThrottledAdminLogin(ThrottledLogin, AdminAuthenticationForm):
    pass


class AdminCreationForm(UserCreationForm):
    class Meta(UserCreationForm.Meta):
        model = get_user_model()
        fields = ("username",)
        widgets = {"username": forms.TextInput(attrs={"autofocus": True, "autocomplete": "username"})}
