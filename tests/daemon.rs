//! `vigil run` as a process: sd-notify over a datagram socket standing in
//! for systemd, SIGHUP reloads, SIGTERM stops cleanly.

mod common;

use std::time::{Duration, Instant};

use common::daemon::Daemon;
use common::{TempDir, wait_until};

fn camera(name: &str, pattern: &str) -> String {
    format!("[[camera]]\nname = \"{name}\"\nsource = \"test:{pattern}\"\nfps = 2\nwidth = 160\n")
}

#[test]
fn daemon_notifies_reloads_and_stops_cleanly() {
    let dir = TempDir::new("daemon");
    let config = dir.path().join("vigil.toml");
    let daemon_section = "[daemon]\nstate_dir = \".\"\nsummary_interval = \"1s\"\n";
    std::fs::write(
        &config,
        format!("{daemon_section}{}", camera("yard", "ball")),
    )
    .unwrap();
    // Watchdog of 1 s: the daemon must ping about every 500 ms.
    let mut d = Daemon::start(&dir, &config, Some(1_000_000));

    assert!(
        d.wait_notify("READY=1", Duration::from_secs(10)),
        "no READY: {}",
        d.log_text()
    );
    assert!(
        d.wait_log(
            &["camera state changed", "camera=yard", "state=streaming"],
            Duration::from_secs(10)
        ),
        "{}",
        d.log_text()
    );
    let since = Instant::now();
    assert!(d.wait_notify("WATCHDOG=1", Duration::from_secs(2)));
    assert!(d.wait_notify("WATCHDOG=1", Duration::from_secs(2)));
    assert!(
        since.elapsed() < Duration::from_secs(2),
        "two pings in under 2 s"
    );
    assert!(
        d.wait_notify_prefix("STATUS=1 cameras: 1 streaming", Duration::from_secs(3)),
        "{:?}",
        d.messages
    );

    // SIGHUP with a second camera: it starts, the first keeps running.
    std::fs::write(
        &config,
        format!(
            "{daemon_section}{}{}",
            camera("yard", "ball"),
            camera("gate", "snow")
        ),
    )
    .unwrap();
    d.signal(libc::SIGHUP);
    assert!(
        d.wait_notify("RELOADING=1", Duration::from_secs(5)),
        "{:?}",
        d.messages
    );
    assert!(d.wait_notify("READY=1", Duration::from_secs(5)));
    assert!(
        d.wait_log(
            &["config reloaded", "added=[\"gate\"]", "unchanged=1"],
            Duration::from_secs(5)
        ),
        "{}",
        d.log_text()
    );
    assert!(d.wait_log(&["camera=gate", "state=streaming"], Duration::from_secs(10)));
    assert!(
        !d.log_has(&["camera=yard", "state=stopped"]),
        "an unchanged camera must not restart: {}",
        d.log_text()
    );

    // A broken config on reload is reported and the running one is kept.
    std::fs::write(&config, "[[camera]]\nname = 5\n").unwrap();
    d.signal(libc::SIGHUP);
    assert!(
        d.wait_log(
            &["reload failed, keeping the running config"],
            Duration::from_secs(5)
        ),
        "{}",
        d.log_text()
    );
    assert!(
        d.wait_log(&["vigil.toml:2:8"], Duration::from_secs(2)),
        "{}",
        d.log_text()
    );
    assert!(d.wait_notify("READY=1", Duration::from_secs(5)));

    // SIGTERM: STOPPING=1, every pipeline to NULL, exit 0 within 5 s.
    let asked = Instant::now();
    d.signal(libc::SIGTERM);
    let status = loop {
        if let Some(status) = d.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            asked.elapsed() < Duration::from_secs(5),
            "still running 5 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status {status:?}: {}", d.log_text());
    assert!(
        d.wait_notify("STOPPING=1", Duration::from_secs(1)),
        "{:?}",
        d.messages
    );
    std::thread::sleep(Duration::from_millis(100));
    assert!(d.log_has(&["camera=yard", "state=stopped"]));
    assert!(d.log_has(&["camera=gate", "state=stopped"]));
    assert!(!d.log_text().contains("CRITICAL"), "{}", d.log_text());
}

#[test]
fn sigint_also_stops_and_no_watchdog_pings_without_watchdog_usec() {
    let dir = TempDir::new("daemon-int");
    let config = dir.path().join("vigil.toml");
    std::fs::write(&config, camera("yard", "smpte")).unwrap();
    let mut d = Daemon::start(&dir, &config, None);
    assert!(
        d.wait_notify("READY=1", Duration::from_secs(10)),
        "{}",
        d.log_text()
    );
    assert!(!d.wait_notify("WATCHDOG=1", Duration::from_millis(1500)));
    d.signal(libc::SIGINT);
    assert!(wait_until(Duration::from_secs(5), || d
        .child
        .try_wait()
        .unwrap()
        .is_some()));
    assert!(d.child.wait().unwrap().success());
}

/// The watchdog check: with `WATCHDOG_USEC` set and a datagram
/// socket standing in for `NOTIFY_SOCKET`, pings arrive while the daemon is
/// healthy and stop within one interval after the inference worker is
/// wedged (`VIGIL_FAULT`, debug builds: the worker stops dead, as a job
/// stuck inside llama.cpp would).
#[test]
fn a_wedged_inference_worker_stops_the_watchdog_pings() {
    let dir = TempDir::new("daemon-wedge");
    let config = dir.path().join("vigil.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\nsummary_interval = \"1h\"\nwedged_after = \"5s\"\n{}{}",
            common::config::random_model(),
            camera("yard", "ball"),
        ),
    )
    .unwrap();
    // Watchdog 400 ms: a ping every 200 ms while healthy.
    let interval = Duration::from_millis(400);
    let mut d = Daemon::start_with_env(
        &dir,
        &config,
        Some(interval.as_micros() as u64),
        &[("VIGIL_FAULT", "wedge-inference-after=3s")],
    );
    assert!(
        d.wait_notify("READY=1", Duration::from_secs(60)),
        "no READY: {}",
        d.log_text()
    );
    // Healthy: pings keep coming.
    let mut healthy_pings = 0;
    let healthy_until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < healthy_until {
        if d.wait_notify("WATCHDOG=1", Duration::from_millis(300)) {
            healthy_pings += 1;
        }
    }
    assert!(
        healthy_pings >= 3,
        "{healthy_pings} pings in 1 s while healthy"
    );
    assert!(
        d.wait_log(
            &["fault injection: wedging this thread"],
            Duration::from_secs(10)
        ),
        "{}",
        d.log_text()
    );
    let wedged_at = Instant::now();
    // The worker is silent from here; after wedged_after (5 s) the daemon
    // notices, and the last ping comes at most one interval after that.
    let mut last_ping = None;
    while wedged_at.elapsed() < Duration::from_secs(8) {
        if d.wait_notify("WATCHDOG=1", Duration::from_millis(100)) {
            last_ping = Some(wedged_at.elapsed());
        }
    }
    let last = last_ping.unwrap_or_default();
    assert!(
        last <= Duration::from_secs(5) + interval,
        "pings went on {last:?} after the worker wedged (wedged_after 5 s, interval {interval:?})"
    );
    assert!(
        d.log_has(&["the inference worker is wedged; withholding the watchdog ping"]),
        "{}",
        d.log_text()
    );
    // The cameras are still fine: it is the worker that stops the pings.
    assert!(
        !d.log_has(&["a camera thread is wedged"]),
        "{}",
        d.log_text()
    );
}
