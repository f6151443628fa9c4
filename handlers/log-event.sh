#!/bin/sh
# Example exec handler: append one line per event to a log, once per event.
#
# hookd runs it directly (no shell in between) with the event envelope on
# stdin and HOOKD_* variables in the environment. It stays idempotent by
# remembering HOOKD_EVENT_ID: a retried or replayed event is logged once
# (replays are logged again on purpose, marked "replay"). Exit 0 = done;
# any other exit asks hookd to retry later with backoff.
set -eu

out_dir="${HOOKD_EXAMPLE_DIR:-./state/example-handler}"
mkdir -p "$out_dir/seen"

envelope=$(cat)

# Event ids may contain '/' or ':'; use a digest as the marker file name.
marker="$out_dir/seen/$(printf '%s' "$HOOKD_EVENT_ID" | sha256sum | cut -c1-32)"
if [ -e "$marker" ] && [ "$HOOKD_REPLAY" != "1" ]; then
    echo "already handled $HOOKD_EVENT_ID"
    exit 0
fi

# Ask for a retry when the payload says so (for trying out retries).
case "$envelope" in
    *'"please_fail":true'*)
        echo "failing attempt $HOOKD_ATTEMPT on purpose" >&2
        exit 75 ;;
esac

printf '%s %s %s %s attempt=%s replay=%s\n' \
    "$HOOKD_RECEIVED_AT" "$HOOKD_SOURCE" "$HOOKD_EVENT_TYPE" "$HOOKD_EVENT_ID" \
    "$HOOKD_ATTEMPT" "$HOOKD_REPLAY" >> "$out_dir/events.log"
touch "$marker"
echo "logged $HOOKD_EVENT_TYPE $HOOKD_EVENT_ID"
