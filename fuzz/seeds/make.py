#!/usr/bin/env python3
"""Writes the seed corpus: one small, valid input per scheme variant (the
signatures are real, so the fuzzer starts from requests that verify), plus
config, extractor and time samples. Run from anywhere; rewrites fuzz/seeds/*/."""
import base64, hashlib, hmac, os, pathlib

HERE = pathlib.Path(__file__).resolve().parent
NOW = 1700000000
BODY = b'{"id":"evt_1","type":"message.received","created_at":"2023-11-14T22:13:20Z","data":{"text":"hi"}}'


def mac(key, msg, algo=hashlib.sha256):
    return hmac.new(key, msg, algo).digest()


def write(target, name, text):
    d = HERE / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(text if isinstance(text, bytes) else text.encode())


def req(directives, headers, body=BODY):
    head = "".join(f"@{k} {v}\n" for k, v in directives)
    head += "".join(f"{k}: {v}\n" for k, v in headers)
    return head.encode() + b"\n" + body


# standard-webhooks / svix
key = b"0123456789abcdef0123456789abcdef"
sec = "whsec_" + base64.b64encode(key).decode()
sig = base64.b64encode(mac(key, b"msg_1.%d." % NOW + BODY)).decode()
write("sig_standard_webhooks", "valid", req([("secret", sec), ("now", NOW)],
      [("webhook-id", "msg_1"), ("webhook-timestamp", NOW), ("webhook-signature", f"v1a,xyz v1,{sig}")]))
write("sig_standard_webhooks", "svix", req([("secret", sec), ("secret", "whsec_AAAA"), ("now", NOW + 299)],
      [("svix-id", "msg_1"), ("svix-timestamp", NOW), ("svix-signature", f"v1,{sig}")]))

# stripe
ssec = "whsec_stripe_test"
t = str(NOW).encode()
hexsig = mac(ssec.encode(), t + b"." + BODY).hex()
write("sig_stripe", "valid", req([("secret", ssec), ("now", NOW)],
      [("stripe-signature", f"t={NOW},v1={hexsig},v0=abc,v1={'0' * 64}")]))
write("sig_stripe", "custom", req([("secret", ssec), ("header", "X-Sig"), ("tol", 0), ("now", NOW)],
      [("x-sig", f" t = {NOW} , v1 = {hexsig} ")]))

# hmac variants
gh = mac(b"s3cret", BODY).hex()
write("sig_hmac", "github", req([("secret", "s3cret"), ("header", "X-Hub-Signature-256"), ("prefix", "sha256=")],
      [("x-hub-signature-256", f"sha256={gh}")]))
slack = mac(b"s3cret", b"v0:%d:" % NOW + BODY).hex()
write("sig_hmac", "slack", req([("secret", "s3cret"), ("header", "X-Slack-Signature"), ("prefix", "v0="),
      ("signed", "v0:{timestamp}:{body}"), ("timestamp_header", "X-Slack-Request-Timestamp"), ("now", NOW)],
      [("x-slack-signature", f"v0={slack}"), ("x-slack-request-timestamp", NOW)]))
shop = base64.b64encode(mac(b"s3cret", BODY)).decode()
write("sig_hmac", "shopify", req([("secret", "s3cret"), ("header", "X-Shopify-Hmac-Sha256"), ("encoding", "base64")],
      [("x-shopify-hmac-sha256", shop)]))
s1 = mac(b"k", b"msg_9|{" + BODY + b"}", hashlib.sha1).hex()
write("sig_hmac", "sha1_id", req([("secret", "k"), ("header", "X-Sig"), ("algo", "sha1"),
      ("signed", "{id}|{{{body}}}"), ("id_header", "X-Id"), ("id", "msg_9")],
      [("x-sig", s1), ("x-id", "msg_9")]))
s5 = mac(b"k", BODY, hashlib.sha512).hex()
write("sig_hmac", "sha512", req([("secret", "k"), ("header", "X-Sig"), ("algo", "SHA512")], [("x-sig", f"junk, {s5}")]))

# linkup, linkedapi
lk = mac(b"linkup-secret", t + b"." + BODY).hex()
write("sig_linkup", "valid", req([("secret", "linkup-secret"), ("now", NOW)],
      [("x-linkup-signature", f"v1={lk}"), ("x-linkup-timestamp", NOW)]))
la_secret = "a" * 64
la = mac(la_secret.encode(), t + b"." + BODY).hex()
write("sig_linkedapi", "valid", req([("secret", la_secret), ("now", NOW)],
      [("linked-api-signature", la), ("linked-api-signature-timestamp", NOW)]))

# linq: standard webhooks, timestamp+body, body, canonical json
write("sig_linq", "standard", req([("secret", sec), ("now", NOW)],
      [("webhook-id", "msg_1"), ("webhook-timestamp", NOW), ("webhook-signature", f"v1,{sig}")]))
lq = mac(b"linq-secret", t + b"." + BODY).hex()
write("sig_linq", "timestamp_body", req([("secret", "linq-secret"), ("now", NOW)],
      [("x-webhook-signature", lq), ("x-webhook-timestamp", NOW)]))
write("sig_linq", "body", req([("secret", "linq-secret")], [("x-webhook-signature", "sha256=" + mac(b"linq-secret", BODY).hex())]))
pretty = b'{ "b": [1, 2.0, "x"],\n  "a": {"z": null, "y": true} }'
canon = b'{"a":{"y":true,"z":null},"b":[1,2.0,"x"]}'
write("sig_linq", "canonical", req([("secret", "linq-secret"), ("canonical", "")],
      [("x-webhook-signature", mac(b"linq-secret", canon).hex())], pretty))

# token
write("sig_token", "bearer", req([("secret", "tok_ABC123"), ("prefix", "Bearer ")], [("authorization", "Bearer tok_ABC123")]))
write("sig_token", "plain", req([("secret", "t0k"), ("secret", "t1k"), ("header", "X-Token")], [("x-token", "t1k")]))

# extractors
write("extract", "linq", req([("id", "json:/id"), ("id", "hash"), ("type", "json:/type"), ("time", "json:/created_at"),
      ("time", "now"), ("alias", "message.received=msg")], [("x-event", "push")]))
write("extract", "headers", req([("id", "header:X-GitHub-Delivery"), ("type", "header: X-Event "), ("type", "const:ping"),
      ("time", "header:X-Ts"), ("received", 5)], [("x-github-delivery", "d-1"), ("x-event", "push"), ("x-ts", NOW)],
      b"not json"))
write("extract", "numbers", req([("id", "json:/data/0/n"), ("type", "json:/t~1y~0pe"), ("time", "json:/ts")], [],
      b'{"data":[{"n":12345678901234567890}],"t/y~pe":"a","ts":1700000000123}'))

# config
example = (HERE / ".." / ".." / "receiver.toml.example").read_text()
write("config", "example.toml", example)
write("config", "generic.toml", """[daemon]
state_dir = "/var/lib/hookd"
retention = "7d"
log_format = "json"
max_concurrency = 4

[server]
listen = ["127.0.0.1:8787", "[::1]:8787"]
max_body = "512KiB"
request_timeout = "30s"

[admin]
listen = ""

[[source]]
name = "gh"
provider = "generic"
secrets = ["env:HOME", "s3cret"]
tolerance = "5m"
signature = { scheme = "hmac", header = "X-Hub-Signature-256", prefix = "sha256=", signed = "{timestamp}.{body}", timestamp_header = "X-Ts" }
extract = { id = ["header:X-GitHub-Delivery", "hash"], type = ["header:X-GitHub-Event"], time = ["json:/head_commit/timestamp", "now"] }
type_aliases = { push = "code.push" }

[[source]]
name = "lq"
provider = "linq"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
signature = { scheme = "linq", canonical_json = true }

[[source]]
name = "tok"
provider = "generic"
secret = "tok"
signature = { scheme = "token", header = "Authorization", prefix = "Bearer " }
extract = { id = ["hash"], type = ["const:t"] }

[[handler]]
name = "h"
events = ["code.*", "message.[rs]*"]
sources = ["gh"]
command = ["./bin/h", "--quiet"]
kind = "stream"
timeout = "1m"
backoff = { initial = "2s", max = "1h" }
env = { MODE = "x" }
""")
write("config", "broken.toml", '[[source]]\nname = "a"\nprovider = "generic"\nsignature = { scheme = "hmac", header = "X", encoding = "rot13" }\n')

# times and units
for i, s in enumerate(["2025-05-21T21:30:00Z", "2025-05-21T23:30:00.123456789+02:00", "2025-05-21 15:30:00 -0600",
                       "2025-05-21T21:30:00.5", "2025-05-21 21:30:00", "1747863000", "1747863000000",
                       "99999999999", "0000-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z", "1h 30m", "512 KiB",
                       "18446744073709551615s"]):
    write("timefmt", f"t{i}", s)
