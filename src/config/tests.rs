//! Config loading: the shipped example, defaults, and that every kind of
//! mistake is reported with file, line and key.

use std::net::SocketAddr;
use std::time::Duration;

use super::*;
use crate::extract::Extractor;
use crate::preset::Mode;

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
            "provider = \"gitlab\"",
            "gitlab",
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

fn source(body: &str) -> Result<SourceConfig, ConfigError> {
    let text = format!("[[source]]\nname = \"s\"\n{body}\n");
    parse(&text, Path::new("r.toml")).map(|c| c.sources[0].clone())
}

fn lists(s: &SourceConfig) -> [String; 3] {
    let join = |l: &[Extractor]| {
        l.iter()
            .map(Extractor::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    [
        join(&s.extract.id),
        join(&s.extract.ty),
        join(&s.extract.time),
    ]
}

const SW_SECRET: &str = "secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"";

/// A generic Standard Webhooks source needs no extract table; naming the
/// id or timestamp header (either spelling) means the signed value.
#[test]
fn standard_webhooks_scheme_supplies_its_extraction() {
    let want = ["signed:id", "json:/type", "signed:timestamp"].map(String::from);
    let generic = source(&format!(
        "provider = \"generic\"\n{SW_SECRET}\nsignature = {{ scheme = \"standard-webhooks\" }}"
    ))
    .unwrap();
    assert_eq!(lists(&generic), want);
    let preset = source(&format!("provider = \"standard-webhooks\"\n{SW_SECRET}")).unwrap();
    assert_eq!(lists(&preset), want);
    assert_eq!(preset.scheme.name(), "standard-webhooks");
    for (id, time) in [
        ("webhook-id", "svix-timestamp"),
        ("Svix-Id", "Webhook-Timestamp"),
    ] {
        let s = source(&format!(
            "provider = \"generic\"\n{SW_SECRET}\nsignature = {{ scheme = \"standard-webhooks\" }}\n\
             extract = {{ id = [\"header:{id}\"], type = [\"header:X-Type\"], time = [\"header:{time}\", \"now\"] }}"
        ))
        .unwrap();
        let got = lists(&s);
        assert_eq!(got[0], "signed:id");
        assert_eq!(got[1], "header:x-type");
        assert_eq!(got[2], "signed:timestamp,now");
    }
    // Other schemes keep `header:` as written.
    let s = source(
        "provider = \"generic\"\nsecret = \"k\"\nsignature = { scheme = \"hmac\", header = \"X-Sig\" }\n\
         extract = { id = [\"header:webhook-id\"], type = [\"json:/type\"] }",
    )
    .unwrap();
    assert_eq!(lists(&s)[0], "header:webhook-id");
}

#[test]
fn signed_extractors_need_a_scheme_that_signs_them() {
    let text = "[[source]]\nname = \"s\"\nprovider = \"generic\"\nsecret = \"k\"\n\
                signature = { scheme = \"stripe\" }\n\
                extract = { id = [\"json:/id\", \"signed:id\"], type = [\"json:/type\"] }\n";
    let e = parse(text, Path::new("r.toml")).unwrap_err();
    assert_eq!(e.key, "source[0].extract.id[1]", "{e}");
    assert_eq!(e.line, Some(6), "{e}");
    assert!(e.message.contains("scheme \"stripe\" signs no id"), "{e}");
    let ok = text.replace("signed:id", "hash").replace(
        "type = [\"json:/type\"]",
        "type = [\"json:/type\"], time = [\"signed:timestamp\"]",
    );
    assert!(parse(&ok, Path::new("r.toml")).is_ok());
    let hmac_id = source(
        "provider = \"generic\"\nsecret = \"k\"\n\
         signature = { scheme = \"hmac\", header = \"X-Sig\", id_header = \"X-Id\", signed = \"{id}.{body}\" }\n\
         extract = { id = [\"signed:id\"], type = [\"json:/type\"] }",
    );
    assert!(hmac_id.is_ok());
    let e = source("provider = \"generic\"\nsecret = \"k\"\nsignature = { scheme = \"hmac\", header = \"X\" }\nextract = { id = [\"signed:body\"], type = [\"json:/t\"] }").unwrap_err();
    assert!(e.message.contains("signed:id or signed:timestamp"), "{e}");
}

/// Every sender preset needs nothing but a secret, and fills in what
/// `hookd check` shows.
#[test]
fn sender_presets_need_only_a_secret() {
    let cases = [
        ("standard-webhooks", "standard-webhooks", "signed:id"),
        ("github", "hmac", "header:x-github-delivery"),
        ("stripe", "stripe", "json:/id"),
        ("slack", "hmac", "json:/event_id,hash"),
        ("shopify", "hmac", "header:x-shopify-webhook-id"),
    ];
    for (provider, scheme, id) in cases {
        let s = source(&format!("provider = \"{provider}\"\n{SW_SECRET}")).unwrap();
        assert_eq!(s.scheme.name(), scheme, "{provider}");
        assert_eq!(lists(&s)[0], id, "{provider}");
        assert_eq!(s.mode, Mode::Push);
        let e = source(&format!("provider = \"{provider}\"")).unwrap_err();
        assert_eq!(e.key, "source[0].secret", "{provider}: {e}");
        let e = source(&format!(
            "provider = \"{provider}\"\n{SW_SECRET}\nmode = \"poll\""
        ))
        .unwrap_err();
        assert!(
            e.message.contains("supports mode push only"),
            "{provider}: {e}"
        );
        let e = source(&format!(
            "provider = \"{provider}\"\n{SW_SECRET}\nregister = \"auto\""
        ))
        .unwrap_err();
        assert_eq!(e.key, "source[0].register", "{provider}: {e}");
    }
    // GitHub's action is joined to the event; a type of one's own replaces both.
    let gh = source(&format!("provider = \"github\"\n{SW_SECRET}")).unwrap();
    assert_eq!(
        gh.extract.type_suffix.as_ref().map(Extractor::to_string),
        Some("json:/action".into())
    );
    let own = source(&format!(
        "provider = \"github\"\n{SW_SECRET}\nextract = {{ type = [\"json:/kind\"] }}"
    ))
    .unwrap();
    assert_eq!(own.extract.type_suffix, None);
    assert_eq!(lists(&own)[0], "header:x-github-delivery");
}

#[test]
fn without_a_store_table_the_store_is_sqlite() {
    let cfg = parse(GOOD, Path::new("/etc/hookd/receiver.toml")).unwrap();
    assert!(matches!(cfg.store, StoreConfig::Sqlite));
    assert!(cfg.require_sqlite("hookd run").is_ok());
}

#[test]
fn a_postgres_store_url_is_a_secret_reference() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("db-url"),
        "postgres://hookd:hunter2@db.internal:6543/events?sslmode=require\n",
    )
    .unwrap();
    let file = dir.path().join("receiver.toml");
    let text = format!("{GOOD}\n[store]\nurl = \"file:db-url\"\n");
    let cfg = parse(&text, &file).unwrap();
    let StoreConfig::Postgres(pg) = &cfg.store else {
        panic!("{:?}", cfg.store)
    };
    assert_eq!(pg.target, "database events on db.internal:6543");
    let shown = format!("{:?}", cfg.store);
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("file:db-url"), "{shown}");
    assert_eq!(
        cfg.warnings.len(),
        1,
        "only the generic source's literal secret"
    );
    let refused = cfg.require_sqlite("hookd run").unwrap_err();
    assert!(
        refused.contains("hookd run does not run on a PostgreSQL store yet")
            && refused.contains("receiver.toml")
            && refused.contains("remove [store]"),
        "{refused}"
    );
}

#[test]
fn a_literal_store_url_is_warned_about_only_with_a_password() {
    let with = format!("{GOOD}\n[store]\nurl = \"postgres://hookd:pw@db/events\"\n");
    let cfg = parse(&with, Path::new("/etc/hookd/receiver.toml")).unwrap();
    assert!(
        cfg.warnings.iter().any(|w| w.contains("store.url")),
        "{:?}",
        cfg.warnings
    );
    let without = format!("{GOOD}\n[store]\nurl = \"postgres://hookd@db/events\"\n");
    let cfg = parse(&without, Path::new("/etc/hookd/receiver.toml")).unwrap();
    assert!(
        !cfg.warnings.iter().any(|w| w.contains("store.url")),
        "{:?}",
        cfg.warnings
    );
}

#[test]
fn store_tuning_is_checked_and_needs_a_url() {
    let certs = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/certs/ca.pem");
    let text = format!(
        "{GOOD}\n[store]\nurl = \"postgres://h@db/e\"\nlease = \"10s\"\npool_size = 4\nca_file = \"{}\"\n",
        certs.display()
    );
    let cfg = parse(&text, Path::new("/etc/hookd/receiver.toml")).unwrap();
    let StoreConfig::Postgres(pg) = &cfg.store else {
        panic!("{:?}", cfg.store)
    };
    assert_eq!(
        (pg.lease, pg.pool_size, pg.ca_certs.len()),
        (std::time::Duration::from_secs(10), 4, 1)
    );
    for (table, key, want) in [
        (
            "url = \"postgres://h@db/e\"\nlease = \"0s\"",
            "store.lease",
            "at least 1s",
        ),
        (
            "url = \"postgres://h@db/e\"\npool_size = 1",
            "store.pool_size",
            "between 2",
        ),
        (
            "url = \"postgres://h@db/e\"\nca_file = \"/nonexistent/ca.pem\"",
            "store.ca_file",
            "cannot read",
        ),
        ("lease = \"10s\"", "store.url", "set url too"),
    ] {
        let e = err(&format!("{GOOD}\n[store]\n{table}\n"));
        assert_eq!(e.key, key, "{e}");
        assert!(e.message.contains(want), "{table}: {e}");
    }
}

#[test]
fn a_bad_store_url_names_file_line_and_key() {
    for (url, want) in [
        ("mysql://hookd@db/events", "postgres:// URL"),
        (
            "postgres://hookd:pw@db/events?sslmode=sometimes",
            "not a usable",
        ),
        ("env:HOOKD_TEST_STORE_URL_THAT_IS_NOT_SET", "is not set"),
    ] {
        let text = format!("{GOOD}\n[store]\nurl = \"{url}\"\n");
        let e = err(&text);
        assert_eq!(e.key, "store.url", "{e}");
        assert_eq!(e.line, Some(line_with(&text, "url =")), "{e}");
        assert!(e.message.contains(want), "{url}: {e}");
        assert!(!e.to_string().contains(":pw@"), "{e}");
    }
    let text = format!("{GOOD}\n[store]\nurl = \"postgres://h@db/e\"\npool = 3\n");
    let e = err(&text);
    assert!(e.to_string().contains("pool"), "{e}");
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
