"""The names an expression can read, in one place: the loader checks rule
text against these sets and the engine and the notice policy build their
environments with these functions, so what the guide promises, what the
loader accepts and what a rule sees at run time cannot drift apart.

- event rules see their event's fields and `cycle` (usage also `quota`),
  and, for subscriber events (usage, billing), the subscriber's profile as
  `profile.*`; a cell or a line has no profile of its own;
- a notice's `audience_filter` sees the receiving subscriber's `profile.*`,
  whatever the source: a red cell's notice can go to its VIP home
  subscribers only.
"""

from __future__ import annotations

from typing import Any

from schemas import CustomerProfile, default_profile


def profile_env(profile: CustomerProfile) -> dict[str, Any]:
    """The `profile.*` names of one subscriber."""
    plan = profile.plan
    return {
        "profile.segment": profile.segment.value,
        "profile.language": profile.language.value,
        "profile.preferred_channel": profile.preferred_channel.value,
        "profile.timezone": profile.timezone,
        "profile.prepaid": profile.prepaid,
        "profile.home_cell_id": profile.home_cell_id,
        "profile.broadband_line_id": profile.broadband_line_id,
        "profile.plan.data_quota_mb": plan.data_quota_mb if plan else None,
        "profile.plan.voice_quota_min": plan.voice_quota_min if plan else None,
        "profile.plan.sms_quota": plan.sms_quota if plan else None,
    }


PROFILE_NAMES = frozenset(profile_env(default_profile("x")))
