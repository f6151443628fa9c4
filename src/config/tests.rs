//! Config loading: the shipped example, defaults, and that every kind of
//! mistake is reported with file, line and key.

use super::*;

fn err(text: &str) -> ConfigError {
    parse(text, Path::new("/etc/hookd/receiver.toml")).unwrap_err()
}

/// The 1-based line of the first line containing `needle`.
fn line_with(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .expect("needle in text")
        + 1
}

const GOOD: &str = r#"
[daemon]
state_dir = "/var/lib/hookd"

[[source]]
name = "gh"
provider = "generic"
secret = "s3cret"
signature = { scheme = "hmac", header = "X-Hub-Signature-256", prefix = "sha256=" }
extract = { id = ["header:X-GitHub-Delivery", "hash"], type = ["header:X-GitHub-Event"] }

[[handler]]
name = "h"
events = ["push", "pull_request.*"]
command = ["./bin/h", "--quiet"]
"#;

#[test]
fn shipped_example_is_valid() {
    let text = include_str!("../../receiver.toml.example");
    let cfg = parse(text, Path::new("receiver.toml.example")).unwrap();
    assert_eq!(cfg.sources[0].name, "demo");
    assert_eq!(cfg.handlers.len(), 2);
    assert_eq!(cfg.daemon.state_dir, PathBuf::from("state"));
    assert_eq!(
        cfg.warnings.len(),
        1,
        "the literal demo secret is warned about"
    );
}

#[test]
fn defaults_and_resolution() {
    let cfg = parse(GOOD, Path::new("/etc/hookd/receiver.toml")).unwrap();
    let s = &cfg.sources[0];
    assert_eq!(s.path, "/hooks/gh");
    assert_eq!(s.mode, Mode::Push);
    assert_eq!(s.tolerance, Duration::from_secs(300));
    assert_eq!(s.keys.len(), 1);
    let h = &cfg.handlers[0];
    assert_eq!(
        h.command[0], "/etc/hookd/bin/h",
        "relative programs resolve against the config's directory"
    );
    assert_eq!(
        (h.concurrency, h.max_attempts, h.kind),
        (4, 8, HandlerKind::Exec)
    );
    assert!(h.matches("gh", "pull_request.opened") && !h.matches("gh", "issues"));
    assert_eq!(cfg.route("gh", "push"), ["h"]);
    assert_eq!(
        cfg.server.listen,
        vec!["127.0.0.1:8787".parse::<SocketAddr>().unwrap()]
    );
    assert_eq!(cfg.server.max_body, 1 << 20);
}

#[test]
fn provider_presets_fill_scheme_and_extractors() {
    let text = "[[source]]\nname = \"l\"\nprovider = \"linq\"\nsecret = \"x\"\n";
    let cfg = parse(text, Path::new("r.toml")).unwrap();
    assert_eq!(cfg.sources[0].scheme.name(), "linq");
    assert_eq!(cfg.sources[0].extract.id[0].to_string(), "json:/event_id");
    let lu = parse(
        "[[source]]\nname = \"l\"\nprovider = \"linkup\"\n",
        Path::new("r.toml"),
    )
    .unwrap();
    assert_eq!(lu.sources[0].type_aliases["message"], "message_received");
}

#[test]
fn unknown_key_names_line_and_key() {
    let text = GOOD.replace("command = [", "comand = [");
    let e = err(&text);
    assert_eq!(e.line, Some(line_with(&text, "comand")), "{e}");
    assert!(
        e.to_string().starts_with("/etc/hookd/receiver.toml:"),
        "{e}"
    );
    assert!(e.message.contains("comand"), "{e}");
    assert!(e.key.starts_with("handler[0]"), "{e}");
}

#[test]
fn bad_values_name_line_and_key() {
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "state_dir = \"/var/lib/hookd\"",
            "state_dir = \"/x\"\nretention = \"forever\"",
            "retention",
            "daemon.retention",
        ),
        (
            "prefix = \"sha256=\" }",
            "prefix = \"sha256=\", encoding = \"rot13\" }",
            "rot13",
            "source[0].signature.encoding",
        ),
        (
            "provider = \"generic\"",
            "provider = \"github\"",
            "github",
            "source[0].provider",
        ),
        (
            "events = [\"push\"",
            "sources = [\"nope\"]\nevents = [\"push\"",
            "nope",
            "handler[0].sources[0]",
        ),
        (
            "type = [\"header:X-GitHub-Event\"]",
            "type = [\"hash\"]",
            "extract",
            "source[0].extract.type[0]",
        ),
        (
            "command = [\"./bin/h\", \"--quiet\"]",
            "command = []",
            "command",
            "handler[0].command",
        ),
        (
            "secret = \"s3cret\"",
            "secret = \"s3cret\"\nregister = \"auto\"",
            "register",
            "source[0].register",
        ),
    ];
    for (from, to, needle, key) in cases {
        let text = GOOD.replace(from, to);
        let e = err(&text);
        assert_eq!(e.key, *key, "{e}");
        assert_eq!(e.line, Some(line_with(&text, needle)), "{e}");
    }
}

#[test]
fn secrets_must_resolve() {
    let text = GOOD.replace(
        "secret = \"s3cret\"",
        "secret = \"env:HOOKD_TEST_NOT_SET_ANYWHERE\"",
    );
    let e = err(&text);
    assert_eq!(e.key, "source[0].secret");
    assert!(e.message.contains("HOOKD_TEST_NOT_SET_ANYWHERE"), "{e}");
    assert!(!e.to_string().contains("s3cret"));
}

#[test]
fn none_scheme_needs_insecure() {
    let text = "[[source]]\nname = \"x\"\nprovider = \"generic\"\nsignature = { scheme = \"none\" }\nextract = { id = [\"hash\"], type = [\"const:t\"] }\n";
    let e = err(text);
    assert!(e.message.contains("insecure = true"), "{e}");
    assert!(parse(&format!("{text}insecure = true\n"), Path::new("r.toml")).is_ok());
}

#[test]
fn duplicates_and_syntax_errors() {
    let text = format!("{GOOD}\n[[source]]\nname = \"gh\"\nprovider = \"linq\"\nsecret = \"x\"\n");
    let e = err(&text);
    assert!(e.message.contains("already named"), "{e}");
    assert_eq!(e.line, Some(text.lines().count() - 2));
    let e = err("[daemon\nstate_dir = 1\n");
    assert_eq!(e.line, Some(1), "{e}");
}

#[test]
fn admin_must_stay_on_loopback_unless_allowed() {
    let e = err("[admin]\nlisten = \"0.0.0.0:8788\"\n");
    assert_eq!(e.key, "admin.listen");
    assert!(
        parse(
            "[admin]\nlisten = \"0.0.0.0:8788\"\nallow_remote = true\n",
            Path::new("r.toml")
        )
        .is_ok()
    );
}

const HTTP: &str = r#"
[[handler]]
name = "billing"
kind = "http"
events = ["invoice.*"]
url = "http://127.0.0.1:9000/webhooks/{source}"
headers = { Authorization = "Bearer t0ken" }
sign = { scheme = "standard-webhooks", secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }
"#;

#[test]
fn http_handler_defaults() {
    let cfg = parse(HTTP, Path::new("/etc/hookd/receiver.toml")).unwrap();
    let h = &cfg.handlers[0];
    assert_eq!(h.kind, HandlerKind::Http);
    assert!(h.command.is_empty());
    let t = h.http.as_ref().unwrap();
    assert_eq!(t.method, ::http::Method::POST);
    assert_eq!(t.body, http::BodyMode::Envelope);
    assert!(t.retry_on_4xx && !t.follow_redirects);
    assert_eq!(t.sign.as_ref().unwrap().scheme.name(), "standard-webhooks");
    assert!(t.headers[0].1.is_sensitive());
    assert!(
        !format!("{h:?}").contains("t0ken"),
        "header values never print"
    );
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
}

#[test]
fn http_handler_mistakes_name_line_and_key() {
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "url = \"http://127.0.0.1:9000/webhooks/{source}\"",
            "",
            "[[handler]]",
            "handler[0].url",
        ),
        (
            "url = \"http://127.0.0.1:9000/webhooks/{source}\"",
            "url = \"http://127.0.0.1:9000/{event}\"",
            "url = ",
            "handler[0].url",
        ),
        (
            "kind = \"http\"",
            "kind = \"http\"\nmethod = \"GET\"",
            "method",
            "handler[0].method",
        ),
        (
            "kind = \"http\"",
            "kind = \"http\"\nbody = \"raw\"",
            "body =",
            "handler[0].body",
        ),
        (
            "kind = \"http\"",
            "kind = \"http\"\ncommand = [\"true\"]",
            "command",
            "handler[0].command",
        ),
        (
            "kind = \"http\"",
            "kind = \"exec\"\ncommand = [\"true\"]",
            "url = ",
            "handler[0].url",
        ),
        (
            "Authorization = ",
            "\"Bad Name\" = \"x\", Authorization = ",
            "headers",
            "handler[0].headers.Bad Name",
        ),
        (
            "scheme = \"standard-webhooks\"",
            "scheme = \"stripe\"",
            "sign =",
            "handler[0].sign.scheme",
        ),
        (
            "secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"",
            "secret = \"not base64!\"",
            "sign =",
            "handler[0].sign.secret",
        ),
        (
            "kind = \"http\"",
            "kind = \"http\"\nca_file = \"/nonexistent/ca.pem\"",
            "ca_file",
            "handler[0].ca_file",
        ),
    ];
    for (from, to, needle, key) in cases {
        let text = HTTP.replace(from, to);
        let e = err(&text);
        assert_eq!(e.key, *key, "{e}");
        assert_eq!(e.line, Some(line_with(&text, needle)), "{e}");
    }
}
