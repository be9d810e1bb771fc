"""What the Earth Engine seam does with each failure: the retry table, by HTTP status *and* message.

Earth Engine answers some transient conditions with HTTP 400 ("Computation timed out." under load),
so the status alone does not decide. The table is printed in the README ("Earth Engine", retries)
from :data:`RULES`; the first matching rule wins.
"""

from __future__ import annotations

import http.client
from dataclasses import dataclass

import urllib3

RETRY, SPLIT, REJECT, STOP = "retry", "split", "reject", "stop"


@dataclass(frozen=True)
class Rule:
    """A failure kind: HTTP statuses (empty: any, or none), a message fragment (empty: any), what to do."""

    action: str
    statuses: frozenset[int]
    message: str
    why: str


RULES: tuple[Rule, ...] = (
    Rule(RETRY, frozenset({429}), "", "quota: too many requests or concurrent aggregations"),
    Rule(RETRY, frozenset({500, 502, 503, 504}), "", "server error or service unavailable"),
    Rule(RETRY, frozenset({400}), "Computation timed out", "the server ran out of time under load"),
    Rule(SPLIT, frozenset({400}), "User memory limit exceeded",
         "the request is too heavy: split into smaller requests (rejected if one band still fails)"),
    Rule(STOP, frozenset({401, 403}), "", "credentials or permissions: the whole build stops"),
    Rule(REJECT, frozenset({400, 404}), "", "this sample's request is at fault (e.g. a missing asset)"),
    Rule(RETRY, frozenset(), "Too many concurrent aggregations", "quota (without a status)"),
    Rule(RETRY, frozenset(), "Computation timed out", "server time-out (without a status)"),
    Rule(STOP, frozenset(), "", "any other refusal"),
)

#: Failures outside HTTP answers that another attempt may cure, and what is done with them.
TRANSIENT_ERRORS = (OSError, http.client.HTTPException, urllib3.exceptions.HTTPError, EOFError, TimeoutError)
TRANSPORT = Rule(RETRY, frozenset(), "", "timeouts, dropped connections, truncated or malformed answers")


def action(status: int | None, message: str) -> Rule:
    """The first rule that matches an Earth Engine refusal (status None when the answer had none)."""
    for rule in RULES:
        if rule.statuses and status not in rule.statuses:
            continue
        if not rule.statuses and status is not None and rule.message:
            continue  # message-only rules are for refusals without a status
        if rule.message and rule.message not in message:
            continue
        return rule
    raise AssertionError("the last rule matches everything")


def table() -> list[tuple[str, str, str]]:
    """(when, what noldo does, why) for the README."""
    rows = []
    for rule in RULES:
        statuses = "/".join(str(s) for s in sorted(rule.statuses)) or "no status"
        when = f"{statuses} “{rule.message}.”" if rule.message else (f"{statuses}, other messages"
                                                                     if rule.statuses & {400} else statuses)
        rows.append((when, rule.action, rule.why))
    rows.append(("no answer or a malformed one", TRANSPORT.action, TRANSPORT.why))
    return rows
