"""Schemathesis hooks for the contract run (tests/contract/run.mjs).

Keeps every request the gateway makes on this machine: a generated payout
destination that the gateway would resolve over the network (a Lightning
Address, an LNURL) is pointed at the fake LNURL server on 127.0.0.1, and a
webhook URL at the loopback webhook receiver. Everything else is sent as
generated. `python3 hooks.py` checks the rewriting itself.
"""

import os

LNURL_HOST = os.environ.get("CONTRACT_LNURL_HOST", "127.0.0.1:9")
WEBHOOK_URL = os.environ.get("CONTRACT_WEBHOOK_URL", "http://127.0.0.1:9/hook")


def local_destination(value):
    """The destination to send instead of `value`, keeping what the gateway
    refuses before any network call (wrong types, empty, bad names)."""
    if not isinstance(value, str):
        return value
    lower = value.strip().lower()
    if lower.startswith("lightning:"):
        lower = lower[len("lightning:"):]
    if "lnurl" in lower:
        # A bech32 LNURL or lnurlp:// can name any host: use an address instead.
        return "pay@" + LNURL_HOST
    if "@" in value:
        name = value.split("@", 1)[0]
        return name + "@" + LNURL_HOST
    return value


def local_webhook(value):
    """Anything the URL parser could read as a URL (it has a scheme) goes to the receiver."""
    if isinstance(value, str) and ":" in value:
        return WEBHOOK_URL
    return value


def sanitize_body(body):
    if isinstance(body, dict):
        if "destination" in body:
            body["destination"] = local_destination(body["destination"])
        if "webhook_url" in body:
            body["webhook_url"] = local_webhook(body["webhook_url"])
    return body


try:
    import schemathesis

    @schemathesis.hook
    def before_call(context, case, kwargs):
        if case.operation.path == "/api/payouts" and case.method.upper() == "POST":
            case.body = sanitize_body(case.body)

except ImportError:  # run as a script for the self-check
    pass


if __name__ == "__main__":
    h = LNURL_HOST
    cases = [
        ("alice@example.com", "alice@" + h),
        ("  Bob@Evil.example:443 ", "  Bob@" + h),
        ("LIGHTNING:LNURL1DP68GURN8GHJ7", "pay@" + h),
        ("lnurlp://example.com/pay", "pay@" + h),
        ("lnbc10u1pxyz", "lnbc10u1pxyz"),
        ("", ""),
        (5, 5),
        (None, None),
    ]
    for given, want in cases:
        got = local_destination(given)
        assert got == want, (given, got, want)
    assert local_webhook("https://example.com/h") == WEBHOOK_URL
    assert local_webhook("https:example.com") == WEBHOOK_URL
    assert local_webhook("not a url") == "not a url"
    assert local_webhook(7) == 7
    body = sanitize_body({"destination": "x@example.com", "webhook_url": "http://10.0.0.1/"})
    assert body == {"destination": "x@" + h, "webhook_url": WEBHOOK_URL}, body
    print("hooks: self-check ok")
