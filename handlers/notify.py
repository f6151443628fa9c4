#!/usr/bin/env python3
"""Example exec handler in Python: act on message events, idempotently.

hookd passes the event envelope as JSON on stdin:
  {"id", "event_id", "source", "provider", "type", "occurred_at",
   "received_at", "attempt", "replay", "payload"}
and HOOKD_EVENT_ID etc. in the environment. Exit 0 means done; any other
exit code asks hookd to retry with backoff (up to max_attempts, then the
delivery is "dead" and can be replayed with `hookd replay --status dead`).
"""
import hashlib
import json
import os
import sys

out_dir = os.environ.get("HOOKD_EXAMPLE_DIR", "./state/example-handler")
seen_dir = os.path.join(out_dir, "notified")
os.makedirs(seen_dir, exist_ok=True)

envelope = json.load(sys.stdin)
event_id = os.environ["HOOKD_EVENT_ID"]
marker = os.path.join(seen_dir, hashlib.sha256(event_id.encode()).hexdigest()[:32])

if os.path.exists(marker) and os.environ.get("HOOKD_REPLAY") != "1":
    print(f"already notified for {event_id}")
    sys.exit(0)

payload = envelope.get("payload")
if isinstance(payload, dict) and payload.get("please_fail"):
    print(f"attempt {envelope['attempt']} failing on purpose", file=sys.stderr)
    sys.exit(75)

text = ""
if isinstance(payload, dict):
    data = payload.get("data") if isinstance(payload.get("data"), dict) else payload
    text = str(data.get("text") or data.get("message") or data.get("message_text") or "")

# A real handler would call Slack, a database, ... here.
print(f"notify: {envelope['source']} {envelope['type']} {event_id}: {text[:80]}")
with open(marker, "w") as f:
    f.write(envelope["received_at"])
