#!/usr/bin/env python3
"""Makes tests/vectors/presets.json: signed requests for hookd's sender
presets, signed by each sender's own official library (or, for Shopify,
which ships none for this, its documented example code), with what hookd
must extract from them. Run once; the tests read the JSON, so `cargo test`
needs neither Python nor Node.

    python3 -m venv /tmp/v && /tmp/v/bin/pip install standardwebhooks stripe slack_sdk
    mkdir /tmp/n && (cd /tmp/n && npm install @octokit/webhooks-methods)
    NPM_DIR=/tmp/n /tmp/v/bin/python tests/vectors/presets/generate.py

Secrets and ids below are made up for the vectors; timestamps are fixed.
"""

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from importlib.metadata import version

import standardwebhooks
import stripe
from slack_sdk.signature import SignatureVerifier

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "presets.json")


def compact(obj):
    return json.dumps(obj, separators=(",", ":"))


def standard_webhooks():
    made = f"standardwebhooks {version('standardwebhooks')} (PyPI) Webhook.sign"
    out = []
    cases = [
        # The library's own test secret and message (signature-vectors.json sign_basic).
        ("official_test_secret", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
         "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, '{"test": 2432232314}', None),
        # The spec's example message, as Svix/Clerk/Resend send it.
        ("spec_example_payload", "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
         "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", 1674087231,
         compact({"type": "contact.created", "timestamp": "2022-11-03T20:26:10.344522Z",
                  "data": {"id": "1f81eb52-5198-4599-803e-771906343485"}}), "contact.created"),
    ]
    for name, secret, msg_id, ts, body, ty in cases:
        wh = standardwebhooks.Webhook(secret)
        sig = wh.sign(msg_id, datetime.fromtimestamp(ts, tz=timezone.utc), body)
        for spelling in ("webhook", "svix"):
            headers = [[f"{spelling}-id", msg_id], [f"{spelling}-timestamp", str(ts)],
                       [f"{spelling}-signature", sig]]
            out.append({
                "preset": "standard-webhooks", "name": f"{name}_{spelling}", "made_with": made,
                "secret": secret, "now": ts, "headers": headers, "body": body, "timestamped": True,
                # Without a `type` the message verifies but is refused (422).
                "expect": ({"event_id": msg_id, "type": ty, "occurred_at": ts} if ty
                           else {"refused": "no_event_type"}),
            })
    return out


def github():
    made = f"@octokit/webhooks-methods {npm_version()} (npm) sign"
    cases = [
        # GitHub docs' validation example: secret and body from
        # docs.github.com ... validating-webhook-deliveries.
        ("docs_example", "It's a Secret to Everybody", "Hello, World!", "ping",
         "d9f2a3c0-0000-11ef-8000-000000000001", "ping"),
        ("pull_request_opened", "gh-preset-secret",
         compact({"action": "opened", "number": 7, "pull_request": {"id": 1, "title": "Add presets"},
                  "repository": {"full_name": "octo/hookd"}}),
         "pull_request", "72d3162e-cc78-11e3-81ab-4c9367dc0958", "pull_request.opened"),
        ("push_has_no_action", "gh-preset-secret",
         compact({"ref": "refs/heads/main", "before": "0" * 40, "after": "a" * 40,
                  "repository": {"full_name": "octo/hookd"}}),
         "push", "9a1c6f3e-cc78-11e3-81ab-4c9367dc0958", "push"),
    ]
    sigs = node_sign([{"secret": c[1], "payload": c[2]} for c in cases])
    out = []
    for (name, secret, body, event, delivery, ty), sig in zip(cases, sigs):
        out.append({
            "preset": "github", "name": name, "made_with": made, "secret": secret,
            "now": 1700000000, "body": body, "timestamped": False,
            "headers": [["X-GitHub-Event", event], ["X-GitHub-Delivery", delivery],
                        ["X-Hub-Signature-256", sig], ["X-GitHub-Hook-ID", "292430182"]],
            "expect": {"event_id": delivery, "type": ty, "occurred_at": None},
        })
    return out


def node_sign(items):
    with open(os.path.join(HERE, "sign_github.mjs")) as f:
        script = f.read()
    env = dict(os.environ, GITHUB_ITEMS=json.dumps(items))
    run = subprocess.run(["node", "--input-type=module", "-e", script], env=env,
                         capture_output=True, text=True, check=True, cwd=os.environ["NPM_DIR"])
    sigs = json.loads(run.stdout)
    # The docs publish this one: the library must agree with it.
    assert sigs[0] == "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17", sigs[0]
    return sigs


def npm_version():
    path = os.path.join(os.environ["NPM_DIR"], "node_modules", "@octokit", "webhooks-methods",
                        "package.json")
    with open(path) as f:
        return json.load(f)["version"]


def stripe_vectors():
    made = f"stripe {version('stripe')} (PyPI) WebhookSignature.generate_signature_header"
    secret = "whsec_test_secret"
    ts = 1700000000
    body = compact({"id": "evt_1NG8Du2eZvKYlo2CUI79vXWy", "object": "event",
                    "api_version": "2023-10-16", "created": 1699999990, "livemode": False,
                    "type": "payment_intent.succeeded",
                    "data": {"object": {"id": "pi_3NG8Du2eZvKYlo2C0", "object": "payment_intent"}}})
    header = stripe.WebhookSignature.generate_signature_header(body, secret, timestamp=ts)
    stripe.WebhookSignature.verify_header(body, header, secret)
    return [{
        "preset": "stripe", "name": "payment_intent_succeeded", "made_with": made,
        "secret": secret, "now": ts, "headers": [["Stripe-Signature", header]], "body": body,
        "timestamped": True,
        "expect": {"event_id": "evt_1NG8Du2eZvKYlo2CUI79vXWy", "type": "payment_intent.succeeded",
                   "occurred_at": 1699999990},
    }]


def slack():
    made = f"slack_sdk {version('slack_sdk')} (PyPI) SignatureVerifier.generate_signature"
    # The signing secret of Slack's documented worked example.
    secret = "8f742231b10e8888abcd99yyyzzz85a5"
    ts = 1531420618
    verifier = SignatureVerifier(secret, clock=FixedClock(ts))
    bodies = [
        ("app_mention", compact({
            "token": "XXYYZZ", "team_id": "T123ABC456", "api_app_id": "A123ABC456",
            "event": {"type": "app_mention", "user": "U123ABC456", "text": "<@U0LAN0Z89> hi",
                      "ts": "1515449522.000016", "channel": "C123ABC456", "event_ts": "1515449522000016"},
            "type": "event_callback", "event_id": "Ev123ABC456", "event_time": 1515449522}),
         {"event_id": "Ev123ABC456", "type": "app_mention", "occurred_at": 1515449522}),
        ("url_verification", compact({
            "token": "Jhj5dZrVaK7ZwHHjRyZWjbDl",
            "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
            "type": "url_verification"}),
         {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}),
    ]
    out = []
    for name, body, expect in bodies:
        sig = verifier.generate_signature(timestamp=str(ts), body=body)
        headers = [["X-Slack-Request-Timestamp", str(ts)], ["X-Slack-Signature", sig]]
        assert verifier.is_valid_request(body, dict(headers))
        out.append({"preset": "slack", "name": name, "made_with": made, "secret": secret,
                    "now": ts, "headers": headers, "body": body, "timestamped": True,
                    "expect": expect})
    return out


class FixedClock:
    def __init__(self, now):
        self._now = now

    def now(self):
        return self._now


def shopify():
    made = ("Shopify's documented verification code (shopify.dev, 'Verify webhooks', Python): "
            "base64(HMAC-SHA256(client secret, raw body)); Shopify ships no library that signs")
    secret = "shpss_hookd_preset_secret"
    body = compact({"id": 820982911946154508, "email": "jon@example.com",
                    "created_at": "2024-01-01T12:00:00-05:00", "total_price": "199.00"})
    digest = hmac.new(secret.encode("utf-8"), body.encode("utf-8"), digestmod=hashlib.sha256).digest()
    sig = base64.b64encode(digest).decode()
    return [{
        "preset": "shopify", "name": "orders_create", "made_with": made, "secret": secret,
        "now": 1704128400, "body": body, "timestamped": False,
        "headers": [["X-Shopify-Topic", "orders/create"], ["X-Shopify-Hmac-Sha256", sig],
                    ["X-Shopify-Shop-Domain", "example.myshopify.com"],
                    ["X-Shopify-Webhook-Id", "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"],
                    ["X-Shopify-Triggered-At", "2024-01-01T17:00:00.000000Z"],
                    ["X-Shopify-API-Version", "2024-01"]],
        "expect": {"event_id": "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043", "type": "orders/create",
                   "occurred_at": 1704128400},
    }]


def main():
    vectors = standard_webhooks() + github() + stripe_vectors() + slack() + shopify()
    doc = {
        "_about": ("Signed requests for hookd's sender presets, made by tests/vectors/presets/"
                   "generate.py with each sender's official library (see made_with). 'now' is the "
                   "clock to verify at; expect.occurred_at is unix seconds (null: the receive time); "
                   "expect.challenge marks a handshake answered with that challenge; "
                   "expect.refused a request that verifies but is refused with that code."),
        "vectors": vectors,
    }
    with open(OUT, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    print(f"wrote {len(vectors)} vectors to {os.path.normpath(OUT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
