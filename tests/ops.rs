//! Operations: systemd notifications, watchdog, socket activation, SIGHUP
//! reload, and the metrics endpoint — against the real binary where a
//! process boundary matters.

mod support;

use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::*;

/// A handler for `events` that appends each event's id to `<dir>/<name>.out`.
fn handler_writing_to(dir: &std::path::Path, name: &str, events: &str) -> String {
    let h = id_recorder(dir, name);
    format!(
        "[[handler]]\nname = \"{name}\"\nevents = [\"{events}\"]\ncommand = [\"{}\"]\n\n",
        h.display()
    )
}

#[tokio::test]
async fn ready_after_listening_watchdog_pings_and_stopping_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &generic_source("s", "k"));
    let mut p = Proc::spawn(&cfg, &[("WATCHDOG_USEC", "200000")]);
    // READY=1 came with the address: the listener accepts and answers now.
    let c = reqwest::Client::new();
    let (st, _) = post_signed(&c, &p.url("/hooks/s"), "k", r#"{"id":"a","type":"t"}"#).await;
    assert_eq!(st, 200);
    p.wait_for("WATCHDOG=1");
    p.wait_for("WATCHDOG=1");
    p.signal(libc::SIGTERM);
    p.wait_for("STOPPING=1");
    assert_eq!(p.wait(Duration::from_secs(20)), Some(0));
}

#[tokio::test]
async fn serves_on_a_socket_passed_by_systemd() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &generic_source("s", "k"));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let fd = listener.as_raw_fd();
    let notify_path = dir.path().join("n.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // As systemd does: the socket on fd 3, LISTEN_FDS=1 and LISTEN_PID = the
    // daemon's pid (the shell execs hookd, keeping its pid).
    let mut cmd = Command::new("/bin/sh");
    cmd.args([
        "-c",
        "LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" \"$@\"",
        bin(),
        "-c",
        cfg.to_str().unwrap(),
        "run",
    ])
    .env("NOTIFY_SOCKET", &notify_path)
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let flags = libc::fcntl(3, libc::F_GETFD);
            libc::fcntl(3, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    drop(listener);
    let mut buf = [0u8; 4096];
    let n = notify.recv(&mut buf).unwrap();
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(msg.contains("READY=1"), "{msg}");
    assert!(
        msg.contains(&addr.to_string()),
        "serves on the inherited socket, not server.listen: {msg}"
    );
    let (st, v) = post_signed(
        &reqwest::Client::new(),
        &format!("http://{addr}/hooks/s"),
        "k",
        r#"{"id":"a","type":"t"}"#,
    )
    .await;
    assert_eq!((st, v["status"].as_str()), (200, Some("accepted")));
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
}

/// Deliveries left waiting for a handler that was removed from the config
/// are named in the log, on reload and at the next start.
#[tokio::test]
async fn waiting_work_of_a_removed_handler_is_reported_on_reload_and_start() {
    let dir = tempfile::tempdir().unwrap();
    let failing = script(dir.path(), "fail.sh", "#!/bin/sh\nexit 1\n");
    let gone = format!(
        "[[handler]]\nname = \"gone\"\ncommand = [\"{}\"]\nbackoff = {{ initial = \"1h\", max = \"1h\" }}\n\n",
        failing.display()
    );
    let keep = handler_writing_to(dir.path(), "keep", "*");
    let source = generic_source("s", "k");
    let cfg = write_config(dir.path(), &format!("{source}{gone}{keep}"));
    let mut p = Proc::spawn(&cfg, &[]);
    let c = reqwest::Client::new();
    for id in ["e1", "e2"] {
        let body = format!(r#"{{"id":"{id}","type":"t"}}"#);
        post_signed(&c, &p.url("/hooks/s"), "k", &body).await;
    }
    let failed = "SELECT COUNT(*) FROM deliveries WHERE handler = 'gone' AND status = 'failed'";
    eventually(Duration::from_secs(10), || {
        let n: i64 = state_db(dir.path())
            .query_row(failed, [], |r| r.get(0))
            .unwrap();
        (n == 2).then_some(())
    })
    .await;
    let said = "2 deliveries wait for handler `gone`, which is not in the config";
    assert!(!p.stderr().contains(said));

    write_config(dir.path(), &format!("{source}{keep}"));
    p.signal(libc::SIGHUP);
    p.wait_for("RELOADING=1");
    p.wait_for("READY=1");
    assert!(p.stderr().contains(said), "{}", p.stderr());
    p.signal(libc::SIGTERM);
    assert_eq!(p.wait(Duration::from_secs(20)), Some(0));

    let p = Proc::spawn(&cfg, &[]);
    eventually(Duration::from_secs(10), || {
        p.stderr().contains(said).then_some(())
    })
    .await;
    p.kill();
}

/// A handler removed by a reload starts nothing more: its running attempt
/// finishes and is recorded, what its slot had claimed ahead goes back to
/// pending untouched.
#[tokio::test]
async fn a_handler_removed_by_reload_stops_after_its_running_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let slow = script(
        dir.path(),
        "slow.sh",
        "#!/bin/sh\necho \"$HOOKD_EVENT_ID\" >> slow.log\nsleep 0.3\n",
    );
    let h = format!(
        "[[handler]]\nname = \"h\"\nconcurrency = 1\ncommand = [\"{}\"]\nworking_dir = \"{}\"\n\n",
        slow.display(),
        dir.path().display()
    );
    let source = generic_source("s", "k");
    let cfg = write_config(dir.path(), &format!("{source}{h}"));
    let mut p = Proc::spawn(&cfg, &[]);
    let c = reqwest::Client::new();
    for i in 0..10 {
        let body = format!(r#"{{"id":"e{i}","type":"t"}}"#);
        post_signed(&c, &p.url("/hooks/s"), "k", &body).await;
    }
    eventually(Duration::from_secs(10), || {
        (!lines(&dir.path().join("slow.log")).is_empty()).then_some(())
    })
    .await;
    write_config(dir.path(), &source);
    p.signal(libc::SIGHUP);
    p.wait_for("RELOADING=1");
    p.wait_for("READY=1");
    let db = state_db(dir.path());
    let count = |status: &str| -> i64 {
        db.query_row(
            "SELECT COUNT(*) FROM deliveries WHERE handler = 'h' AND status = ?1",
            [status],
            |r| r.get(0),
        )
        .unwrap()
    };
    eventually(Duration::from_secs(10), || {
        (count("running") == 0).then_some(())
    })
    .await;
    let (ran, done, pending) = (
        lines(&dir.path().join("slow.log")).len() as i64,
        count("succeeded"),
        count("pending"),
    );
    assert_eq!(ran, done, "every started run was recorded");
    assert_eq!(done + pending, 10);
    assert!(
        pending >= 7,
        "runs kept starting after the reload: {ran} ran"
    );
    p.signal(libc::SIGTERM);
    assert_eq!(p.wait(Duration::from_secs(20)), Some(0));
}

#[tokio::test]
async fn sighup_adds_a_handler_and_a_broken_file_keeps_the_old_config() {
    let dir = tempfile::tempdir().unwrap();
    let first = handler_writing_to(dir.path(), "a", "*");
    let cfg = write_config(dir.path(), &format!("{}{first}", generic_source("s", "k")));
    let mut p = Proc::spawn(&cfg, &[]);
    let c = reqwest::Client::new();
    post_signed(&c, &p.url("/hooks/s"), "k", r#"{"id":"e1","type":"t"}"#).await;
    eventually(Duration::from_secs(10), || {
        lines(&dir.path().join("a.out"))
            .contains(&"e1".into())
            .then_some(())
    })
    .await;

    // A new handler via SIGHUP runs for the next event.
    let second = handler_writing_to(dir.path(), "b", "t");
    write_config(
        dir.path(),
        &format!("{}{first}{second}", generic_source("s", "k")),
    );
    p.signal(libc::SIGHUP);
    p.wait_for("RELOADING=1");
    p.wait_for("READY=1");
    post_signed(&c, &p.url("/hooks/s"), "k", r#"{"id":"e2","type":"t"}"#).await;
    eventually(Duration::from_secs(10), || {
        lines(&dir.path().join("b.out"))
            .contains(&"e2".into())
            .then_some(())
    })
    .await;
    assert!(
        !lines(&dir.path().join("b.out")).contains(&"e1".into()),
        "no retroactive routing"
    );

    // A broken file: the running config stays, and the log says why.
    std::fs::write(&cfg, "[daemon\nthis is not toml").unwrap();
    p.signal(libc::SIGHUP);
    p.wait_for("RELOADING=1");
    p.wait_for("READY=1");
    let (st, _) = post_signed(&c, &p.url("/hooks/s"), "k", r#"{"id":"e3","type":"t"}"#).await;
    assert_eq!(st, 200);
    eventually(Duration::from_secs(10), || {
        (lines(&dir.path().join("a.out")).contains(&"e3".into())
            && lines(&dir.path().join("b.out")).contains(&"e3".into()))
        .then_some(())
    })
    .await;
    assert!(p.stderr().contains("config not reloaded"), "{}", p.stderr());
    p.signal(libc::SIGTERM);
    assert_eq!(p.wait(Duration::from_secs(20)), Some(0));
}

/// Parses Prometheus text exposition into (series, value), failing on any
/// line that is neither a comment nor `name{labels} value`.
fn parse_metrics(text: &str) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line:?}"));
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        if name_end < series.len() {
            assert!(series.ends_with('}'), "unterminated labels in {line:?}");
        }
        let v: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        out.push((series.to_string(), v));
    }
    out
}

fn metric(m: &[(String, f64)], series: &str) -> f64 {
    m.iter()
        .find(|(s, _)| s == series)
        .map(|(_, v)| *v)
        .unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_parse_and_count_what_flows() {
    let dir = tempfile::tempdir().unwrap();
    let h = handler_writing_to(dir.path(), "h", "*");
    let d = TestDaemon::start_in(dir, &format!("{}{h}", generic_source("s", "k"))).await;
    let c = reqwest::Client::new();
    let admin = d.admin.clone().unwrap();
    let scrape = || async {
        let r = c.get(format!("{admin}/metrics")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        parse_metrics(&r.text().await.unwrap())
    };
    let before = scrape().await;
    assert!(
        before
            .iter()
            .any(|(s, _)| s.starts_with("hookd_queue_depth")),
        "gauges exported from the start"
    );
    for i in 0..5 {
        post_signed(
            &c,
            &d.url("/hooks/s"),
            "k",
            &format!(r#"{{"id":"m{i}","type":"t"}}"#),
        )
        .await;
    }
    post_signed(&c, &d.url("/hooks/s"), "k", r#"{"id":"m0","type":"t"}"#).await;
    post_signed(&c, &d.url("/hooks/s"), "wrong", r#"{"id":"x","type":"t"}"#).await;
    let out = d.dir.path().join("h.out");
    eventually(Duration::from_secs(10), || {
        (lines(&out).len() == 5).then_some(())
    })
    .await;
    // Handler outcomes are counted when the attempt is recorded, just after
    // the handler's own output appeared.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let m = loop {
        let m = scrape().await;
        if metric(&m, "hookd_succeeded_total{handler=\"h\"}") == 5.0 {
            break m;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "succeeded counter never reached 5"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(metric(&m, "hookd_received_total{source=\"s\"}"), 7.0);
    assert_eq!(metric(&m, "hookd_accepted_total{source=\"s\"}"), 5.0);
    assert_eq!(metric(&m, "hookd_duplicate_total{source=\"s\"}"), 1.0);
    assert_eq!(
        metric(
            &m,
            "hookd_rejected_total{source=\"s\",reason=\"bad_signature\"}"
        ),
        1.0
    );
    assert_eq!(metric(&m, "hookd_dispatched_total{handler=\"h\"}"), 5.0);
    assert_eq!(
        metric(&m, "hookd_ack_latency_seconds_count{source=\"s\"}"),
        6.0
    );
    assert_eq!(
        metric(&m, "hookd_handler_duration_seconds_count{handler=\"h\"}"),
        5.0
    );
    // The writer's time is read at scrape time: the writes above took some.
    for series in [
        "hookd_store_run_seconds_total",
        "hookd_store_commit_seconds_total",
    ] {
        assert!(
            metric(&m, series) > metric(&before, series),
            "{series} did not grow"
        );
    }
    assert!(metric(&m, "hookd_store_commits_total") >= 1.0);
    for path in ["/healthz", "/readyz"] {
        assert_eq!(
            c.get(format!("{admin}{path}"))
                .send()
                .await
                .unwrap()
                .status(),
            200,
            "{path}"
        );
    }
    d.stop().await;
}

#[tokio::test]
async fn after_a_clean_stop_the_database_file_alone_holds_every_event() {
    let d = TestDaemon::start(&generic_source("s", "k")).await;
    let c = reqwest::Client::new();
    for i in 0..20 {
        let body = format!(r#"{{"id":"e{i}","type":"t"}}"#);
        let (st, _) = post_signed(&c, &format!("{}/hooks/s", d.base), "k", &body).await;
        assert_eq!(st, 200);
    }
    let dir = d.stop().await;
    // What a backup of just `hookd.db` would hold: the file without its WAL.
    let copy = tempfile::tempdir().unwrap();
    std::fs::copy(
        dir.path().join("state/hookd.db"),
        copy.path().join("hookd.db"),
    )
    .unwrap();
    let events: i64 = rusqlite::Connection::open(copy.path().join("hookd.db"))
        .unwrap()
        .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(events, 20);
    let wal = std::fs::metadata(dir.path().join("state/hookd.db-wal")).map_or(0, |m| m.len());
    assert_eq!(wal, 0, "the WAL was emptied");
}

#[tokio::test]
async fn reload_says_a_new_global_handler_cap_waits_for_a_restart() {
    let d = TestDaemon::start(&generic_source("s", "k")).await;
    let text = std::fs::read_to_string(&d.config_path).unwrap();
    let same = hookd::config::parse(&text, &d.config_path).unwrap();
    let notes = d.daemon().reload(same).await.unwrap();
    assert!(
        !notes.iter().any(|n| n.contains("max_concurrency")),
        "{notes:?}"
    );

    let capped = text.replacen("[daemon]\n", "[daemon]\nmax_concurrency = 3\n", 1);
    assert_ne!(capped, text);
    let notes = d
        .daemon()
        .reload(hookd::config::parse(&capped, &d.config_path).unwrap())
        .await
        .unwrap();
    assert!(
        notes
            .iter()
            .any(|n| n.contains("daemon.max_concurrency changed") && n.contains("next restart")),
        "{notes:?}"
    );
    d.stop().await;
}

#[tokio::test]
async fn reload_opens_new_listeners_and_closes_removed_ones() {
    let d = TestDaemon::start(&generic_source("s", "k")).await;
    let first = d.daemon().listening().await;
    assert_eq!(first.len(), 1);
    let with_second = |listen: &str| {
        let text = std::fs::read_to_string(&d.config_path)
            .unwrap()
            .replace("listen = [\"127.0.0.1:0\"]", listen);
        hookd::config::parse(&text, &d.config_path).unwrap()
    };
    d.daemon()
        .reload(with_second("listen = [\"127.0.0.1:0\", \"127.0.0.2:0\"]"))
        .await
        .unwrap();
    let both = d.daemon().listening().await;
    assert_eq!(both.len(), 2);
    assert_eq!(both[0], first[0], "the existing listener is kept");
    let c = reqwest::Client::new();
    let (st, _) = post_signed(
        &c,
        &format!("http://{}/hooks/s", both[1]),
        "k",
        r#"{"id":"n","type":"t"}"#,
    )
    .await;
    assert_eq!(st, 200, "the new address serves");

    d.daemon()
        .reload(with_second("listen = [\"127.0.0.2:0\"]"))
        .await
        .unwrap();
    assert_eq!(d.daemon().listening().await, vec![both[1]]);
    let gone = eventually(Duration::from_secs(10), || {
        std::net::TcpStream::connect_timeout(&first[0], Duration::from_millis(200))
            .is_err()
            .then_some(())
    });
    gone.await;
    d.stop().await;
}

#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &generic_source("s", "canary-secret-4711"));
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("[daemon]\n", "[daemon]\nlog_format = \"json\"\n");
    std::fs::write(&cfg, text).unwrap();
    let p = Proc::spawn(&cfg, &[]);
    post_signed(
        &reqwest::Client::new(),
        &p.url("/hooks/s"),
        "wrong",
        r#"{"id":"a","type":"t"}"#,
    )
    .await;
    p.signal(libc::SIGTERM);
    let stderr_path = p.stderr_path.clone();
    assert_eq!(p.wait(Duration::from_secs(20)), Some(0));
    let log = std::fs::read_to_string(stderr_path).unwrap();
    let objects: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect();
    assert!(
        objects
            .iter()
            .any(|o| o["message"].as_str().is_some_and(|m| m.contains("refused"))),
        "{log}"
    );
    assert!(
        !log.contains("canary-secret-4711"),
        "the secret never appears in logs"
    );
}
