from __future__ import annotations

from datetime import datetime

from django import template
from django.urls import reverse
from django.utils.html import conditional_escape, format_html
from django.utils.safestring import SafeString, mark_safe
from django.utils.timesince import timesince

register = template.Library()


@register.filter
def duration(seconds: int | None) -> str:
    """3 s, 4 min 05 s, 2 h 03 min."""
    if seconds is None:
        return "—"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


@register.filter
def compact_count(count: int) -> str:
    """769, 77.8k, 1.2M: a count as a card has room for (the exact one goes in its title)."""
    if count < 1000:
        return str(count)
    for size, suffix in ((1_000, "k"), (1_000_000, "M")):
        shown = f"{count / size:.1f}".removesuffix(".0")
        if float(shown) < 1000 or suffix == "M":  # 999,950 is 1M, not 1000k
            break
    return f"{shown}{suffix}"


@register.filter
def short_ago(moment: datetime) -> str:
    """3 days ago, 1 year ago: naturaltime's "1 year, 11 months ago" is longer than a card has room for."""
    return f"{timesince(moment, depth=1)} ago"


@register.filter
def get_item(mapping: dict[str, object], key: str) -> object:
    return mapping.get(key)


@register.filter
def link_settings(message: str) -> SafeString:
    """An upstream error ("… add one in Settings.") with Settings linked to the API keys, where it is fixed."""
    link = format_html('in <a href="{}#api-keys">Settings</a>', reverse("settings"))
    # Safe: the message is escaped before the link goes in.
    return mark_safe(conditional_escape(message).replace("in Settings", link))
