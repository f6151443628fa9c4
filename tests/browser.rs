//! The console in a real browser: headless Chromium against a live daemon
//! with events, dead deliveries and a hostile payload. It renders the
//! pages (DOM dumps and screenshots), the hostile payload stays text, and
//! the replay form the page renders works.
//!
//! Without `chromium` on the PATH the test prints one line and passes,
//! unless `CI` is set (`.ci/run` installs it), where that is a failure.
//! `HOOKD_SCREENSHOTS=DIR` keeps the screenshots in DIR.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::*;

/// The payload would run script, load an image or end the `<pre>` early
/// if it were ever written into the page as markup.
const HOSTILE: &str = r#"{"id":"evil","type":"order.paid","note":"</pre><script>document.title='pwned'</script><img src=x onerror=\"document.title='pwned'\">"}"#;

/// Finds `chromium` on the PATH.
fn chromium() -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join("chromium"))
        .find(|p| p.is_file())
}

/// Runs headless Chromium once with `args`, in a fresh profile; its stdout.
async fn run_chromium(bin: &Path, args: &[String]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .args(args)
    .kill_on_drop(true)
    .stdin(std::process::Stdio::null());
    let out = tokio::time::timeout(Duration::from_secs(90), cmd.output())
        .await
        .expect("chromium finished within 90 s")
        .unwrap();
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn dump_dom(bin: &Path, url: &str) -> String {
    run_chromium(bin, &["--dump-dom".into(), url.into()]).await
}

/// Takes a 1280×900 screenshot of `url` into `file` and checks it is a PNG.
async fn screenshot(bin: &Path, url: &str, file: &Path) {
    run_chromium(
        bin,
        &[
            format!("--screenshot={}", file.display()),
            "--window-size=1280,900".into(),
            url.into(),
        ],
    )
    .await;
    let png = std::fs::read(file).unwrap();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is a PNG",
        file.display()
    );
    assert!(png.len() > 10_000, "{} has content", file.display());
}

/// The value of the hidden `csrf` input in a DOM dump.
fn csrf_of(dom: &str) -> String {
    let at = dom.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    dom[at..at + 64].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_renders_in_chromium_and_its_replay_form_works() {
    let Some(bin) = chromium() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium is missing in CI; .ci/run should install it"
        );
        println!("skipped: chromium is not installed (apt-get install chromium)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let fail = script(
        dir.path(),
        "charge.sh",
        "#!/bin/sh\necho \"card declined for $HOOKD_EVENT_ID\" >&2\nexit 2\n",
    );
    let body = format!(
        "console_actions = true\n\n{}[[handler]]\nname = \"charge\"\nevents = [\"order.*\"]\ncommand = [\"{}\"]\nmax_attempts = 1\n\n",
        generic_source("shop", "k"),
        fail.display()
    );
    let d = TestDaemon::start_in(dir, &body).await;
    let admin = d.admin.clone().unwrap();
    let c = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let hook = d.url("/hooks/shop");
    let (_, v) = post_signed(&c, &hook, "k", HOSTILE).await;
    let evil = v["id"].as_i64().unwrap();
    for (id, ty) in [
        ("o-1", "order.paid"),
        ("o-2", "order.refunded"),
        ("p-1", "ping"),
    ] {
        post_signed(
            &c,
            &hook,
            "k",
            &format!(r#"{{"id":"{id}","type":"{ty}","amount":42}}"#),
        )
        .await;
    }
    // A refused request, for the rejected page.
    let r = c.post(&hook).body("{}").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    all_settled(d.dir.path(), Duration::from_secs(30)).await;

    // The hostile payload is text in the DOM: no element came from it and
    // no script changed the title.
    let dom = dump_dom(&bin, &format!("{admin}/events/{evil}")).await;
    assert!(
        dom.contains(&format!("<title>Event {evil} · hookd</title>")),
        "{dom}"
    );
    assert!(!dom.contains("<script") && !dom.contains("<img"), "{dom}");
    assert!(
        dom.contains("&lt;/pre&gt;&lt;script&gt;document.title='pwned'&lt;/script&gt;"),
        "{dom}"
    );
    assert!(
        dom.contains("card declined for evil"),
        "the attempt's output is shown"
    );

    let shots = match std::env::var_os("HOOKD_SCREENSHOTS") {
        Some(p) => PathBuf::from(p),
        None => d.dir.path().join("shots"),
    };
    std::fs::create_dir_all(&shots).unwrap();
    for (name, path) in [
        ("events", "/".to_string()),
        ("event", format!("/events/{evil}")),
        ("dead", "/deliveries?status=dead".to_string()),
        ("rejected", "/rejected".to_string()),
    ] {
        screenshot(
            &bin,
            &format!("{admin}{path}"),
            &shots.join(format!("{name}.png")),
        )
        .await;
    }

    // Replay every dead delivery of `charge` with the form the page renders.
    let dom = dump_dom(&bin, &format!("{admin}/deliveries?status=dead")).await;
    assert!(dom.contains("Replay all dead of charge"), "{dom}");
    assert_eq!(
        dom.matches("class=\"s-dead\"").count(),
        3,
        "three dead deliveries: {dom}"
    );
    let form = format!("csrf={}&handler=charge", csrf_of(&dom));
    let r = c
        .post(format!("{admin}/actions/replay-dead"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let replays = "SELECT COUNT(*) FROM attempts WHERE replay = 1";
    eventually(Duration::from_secs(30), || {
        (d.count(replays) == 3).then_some(())
    })
    .await;
    all_settled(d.dir.path(), Duration::from_secs(30)).await;
    let dom = dump_dom(&bin, &format!("{admin}/deliveries?status=dead")).await;
    assert_eq!(dom.matches("dead (replay)").count(), 3, "{dom}");
    screenshot(
        &bin,
        &format!("{admin}/events/{evil}"),
        &shots.join("event-after-replay.png"),
    )
    .await;
    d.stop().await;
}
