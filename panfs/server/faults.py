"""Fault rules: which request gets which misbehaviour, reproducibly.

Owns: parsing and validating rules (``{op, match, action, ...parameters, times,
probability}``), matching them against a request, counting how often each fired,
and the seeded RNG behind ``probability``. Must not: perform the action (the app
does) or know HTTP.

Actions: ``status`` (reply ``status`` with ``body``, ``content_type`` and optional
``headers``, e.g. 429 with ``x-retry-after``), ``delay`` (``ms``, then serve normally),
``answer_after`` (perform the API call, then wait ``ms`` before answering: a client that
dies meanwhile never learns the result, the drive keeps it), ``drop_after_store`` (store
the part, or perform the API call, then drop the connection without answering), ``drop``
(drop without doing anything), ``cut_body`` (read ``after_bytes`` of the body, then
drop), ``store_truncated`` (store only the first ``keep_bytes`` of the part as if
complete, and answer 200), ``oss_error`` (answer the OSS XML error ``code``, e.g. 500
``InternalError`` or 503 ``ServiceUnavailable``, with ``status`` to override the code's
own), ``expire_session`` (the request's upload session ends server-side, then the
request is served: ``NotFound.UploadId`` / ``NoSuchUpload``).

API calls match on their JSON body; ``getUploadUrl`` also on ``part_number`` (the
first part asked for); part PUTs on ``part_number`` and ``upload_id``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

ACTIONS = {
    "status",
    "delay",
    "answer_after",
    "drop_after_store",
    "drop",
    "cut_body",
    "store_truncated",
    "oss_error",
    "expire_session",
}


class FaultRuleError(ValueError):
    pass


@dataclass
class Rule:
    op: str
    action: str
    match: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    times: int | None = None
    probability: float = 1.0
    fired: int = 0

    @classmethod
    def parse(cls, raw: Any) -> Rule:
        if not isinstance(raw, dict):
            raise FaultRuleError(f"a fault rule must be a mapping, got {raw!r}")
        d = dict(raw)
        op = d.pop("op", None)
        action = d.pop("action", None)
        if not isinstance(op, str) or not op:
            raise FaultRuleError(
                f"fault rule needs 'op' (an endpoint, put_part or download): {raw}"
            )
        if action not in ACTIONS:
            raise FaultRuleError(f"fault rule action must be one of {sorted(ACTIONS)}: {raw}")
        match = d.pop("match", None) or {}
        if not isinstance(match, dict):
            raise FaultRuleError(f"fault rule 'match' must be a mapping: {raw}")
        times = d.pop("times", None)
        prob = float(d.pop("probability", 1.0))
        if action == "status" and "status" not in d:
            raise FaultRuleError(f"a 'status' action needs 'status': {raw}")
        if action == "oss_error" and not isinstance(d.get("code"), str):
            raise FaultRuleError(f"an 'oss_error' action needs 'code' (e.g. InternalError): {raw}")
        return cls(op, action, match, d, times, prob)

    def matches(self, op: str, fields: dict[str, Any]) -> bool:
        if self.op not in (op, "*"):
            return False
        if self.times is not None and self.fired >= self.times:
            return False
        return all(str(fields.get(k)) == str(v) for k, v in self.match.items())


class Faults:
    def __init__(self, seed: int = 0) -> None:
        self.rules: list[Rule] = []
        self.rng = random.Random(seed)

    def replace(self, raw_rules: Any) -> None:
        if raw_rules is None:
            raw_rules = []
        if not isinstance(raw_rules, list):
            raise FaultRuleError("fault rules must be a list")
        self.rules = [Rule.parse(r) for r in raw_rules]

    def pick(self, op: str, fields: dict[str, Any]) -> Rule | None:
        """The first matching rule that fires now (counts it), or None."""
        for rule in self.rules:
            if rule.matches(op, fields):
                if rule.probability < 1.0 and self.rng.random() >= rule.probability:
                    continue
                rule.fired += 1
                return rule
        return None
