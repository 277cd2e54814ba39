//! The refresh loop under faults injected through the verifying endpoint: scripted
//! failures, resets, stalls, odd expirations, clock skew, token removal, torn reads and
//! kill -9. Time is a `ManualClock`: waits are recorded, never slept.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use mock_rolesanywhere::Scripted;
use ra_agent::atomic::FileMode;
use ra_agent::cli;
use ra_agent::client::Client;
use ra_agent::daemon::Refresher;
use ra_agent::daemon::clock::{Clock, Event, ManualClock};
use ra_agent::daemon::policy::{Jitter, Settings};
use ra_agent::outputs::{Format, Output};
use time::OffsetDateTime;

const GOOD_FILE: &str = "# kept\n[default]\naws_access_key_id = GOOD\naws_secret_access_key = GOODSECRET\naws_session_token = GOODTOKEN\n";

fn options(server: &Server, extra: &[&str]) -> cli::Options {
    let mut list = args(&[
        "update",
        "--certificate",
        pki("ec/leaf-fullchain.pem").to_str().unwrap(),
        "--private-key",
        pki("ec/leaf.key").to_str().unwrap(),
    ]);
    list.extend(identity_args(server, EC_TRUST_ANCHOR_ARN));
    list.extend(args(extra));
    cli::parse(list.into_iter().map(Into::into)).unwrap()
}

fn credentials_output(path: &Path) -> Output {
    Output {
        path: path.to_owned(),
        format: Format::SharedCredentials {
            profile: "default".into(),
        },
        access: FileMode::default(),
    }
}

fn refresher<'a>(options: &'a cli::Options, file: &Path) -> Refresher<'a> {
    Refresher::new(
        Settings::default(),
        Box::new(move || Client::from_options(options)),
        vec![credentials_output(file)],
    )
    .with_jitter(Jitter::with_seed(42))
}

fn status(code: u16, error_type: &str) -> Scripted {
    Scripted::Status {
        status: code,
        error_type: error_type.into(),
        message: format!("scripted {code}"),
    }
}

#[test]
fn transient_failures_back_off_then_succeed() {
    let server = start_server();
    let dir = TempDir::new("d-transient");
    let file = dir.path("credentials");
    std::fs::write(&file, GOOD_FILE).unwrap();
    for step in [
        status(500, "InternalServerError"),
        status(500, "InternalServerError"),
        status(429, "ThrottlingException"),
        Scripted::Reset,
    ] {
        server.push_script(step);
    }
    let options = options(&server, &[]);
    let mut refresher = refresher(&options, &file);
    let settings = Settings::default();
    let now = OffsetDateTime::now_utc();
    for failures in 1..=4u32 {
        let wait = refresher.refresh(now).unwrap();
        assert!(
            wait >= settings.min_interval,
            "attempt {failures}: {wait:?}"
        );
        assert!(
            wait <= settings
                .transient
                .ceiling(failures)
                .max(settings.min_interval),
            "attempt {failures}: {wait:?}"
        );
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            GOOD_FILE,
            "attempt {failures}"
        );
    }
    let wait = refresher.refresh(now).unwrap();
    assert!(wait > Duration::from_secs(2900), "after success: {wait:?}");
    assert_eq!(server.request_count(), 5);
    assert_profile_written(&file, "default", &server);
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .starts_with("# kept\n")
    );
}

#[test]
fn rejection_backs_off_much_longer() {
    let server = start_server();
    let dir = TempDir::new("d-reject");
    let file = dir.path("credentials");
    std::fs::write(&file, GOOD_FILE).unwrap();
    server.push_script(status(403, "AccessDeniedException"));
    let options = options(&server, &[]);
    let mut refresher = refresher(&options, &file);
    // Succeed once, so a rejection is a runtime failure and not a start-up error.
    refresher
        .refresh(OffsetDateTime::now_utc())
        .unwrap_or_default();
    server.push_script(status(403, "AccessDeniedException"));
    let wait = refresher.refresh(OffsetDateTime::now_utc()).unwrap();
    assert!(wait >= Duration::from_secs(150), "{wait:?}");
    assert_eq!(server.request_count(), 2);
}

#[test]
fn stalled_request_times_out_and_file_is_unchanged() {
    let server = start_server();
    let dir = TempDir::new("d-stall");
    let file = dir.path("credentials");
    std::fs::write(&file, GOOD_FILE).unwrap();
    server.push_script(Scripted::Stall(Duration::from_secs(30)));
    let options = options(&server, &["--request-timeout", "1"]);
    let mut refresher = refresher(&options, &file);
    let started = std::time::Instant::now();
    let wait = refresher.refresh(OffsetDateTime::now_utc()).unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the timeout did not apply"
    );
    assert!(
        wait <= Settings::default()
            .transient
            .ceiling(1)
            .max(Settings::default().min_interval)
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), GOOD_FILE);
}

#[test]
fn odd_expiration_formats() {
    let server = start_server();
    let dir = TempDir::new("d-expiry");
    let file = dir.path("credentials");
    std::fs::write(&file, GOOD_FILE).unwrap();
    let options = options(&server, &[]);
    let mut refresher = refresher(&options, &file);
    let now = OffsetDateTime::now_utc();
    let later = now + time::Duration::hours(1);
    let date = |t: OffsetDateTime| ra_agent::credentials::format_expiration(t);
    let accepted = [
        date(later),
        date(later).replace('Z', ".250Z"),
        date(later).replace('Z', "+00:00"),
    ];
    for expiration in accepted {
        server.push_script(Scripted::Expiration(expiration.clone()));
        let wait = refresher.refresh(now).unwrap();
        assert!(wait > Duration::from_secs(2800), "{expiration}: {wait:?}");
        assert_profile_written(&file, "default", &server);
    }
    let written = std::fs::read_to_string(&file).unwrap();
    let rejected = ["garbage".to_owned(), date(now - time::Duration::hours(1))];
    for expiration in rejected {
        server.push_script(Scripted::Expiration(expiration.clone()));
        let wait = refresher.refresh(now).unwrap();
        // No busy loop when the expiration cannot be used.
        assert!(
            wait >= Settings::default().min_interval,
            "{expiration}: {wait:?}"
        );
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            written,
            "{expiration}"
        );
    }
}

#[test]
fn clock_skew_is_measured_and_request_resigned() {
    let server = start_server();
    server.set_clock_offset(600);
    let dir = TempDir::new("d-skew");
    let file = dir.path("credentials");
    let options = options(&server, &[]);
    let mut refresher = refresher(&options, &file);
    refresher.refresh(OffsetDateTime::now_utc()).unwrap();
    assert!(
        (refresher.skew() - 600).abs() <= 5,
        "skew {}",
        refresher.skew()
    );
    assert_eq!(server.request_count(), 2, "one rejected, one re-signed");
    assert_profile_written(&file, "default", &server);
}

#[test]
fn unset_clock_waits_without_calling_service() {
    let server = start_server();
    let dir = TempDir::new("d-unset");
    let file = dir.path("credentials");
    let options = options(&server, &[]);
    let mut refresher = refresher(&options, &file);
    let epoch = OffsetDateTime::UNIX_EPOCH;
    for _ in 0..3 {
        let wait = refresher.refresh(epoch).unwrap();
        assert!(wait >= Settings::default().min_interval);
    }
    assert_eq!(server.request_count(), 0);
    assert!(!file.exists());
}

#[test]
fn run_loop_refreshes_before_expiry_and_stops() {
    let server = Arc::new(start_server());
    let dir = TempDir::new("d-loop");
    let file = dir.path("credentials");
    let options = options(&server, &["--session-duration", "3600"]);
    let real_start = OffsetDateTime::now_utc();
    let hook_server = Arc::clone(&server);
    let clock = ManualClock::new(real_start).with_hook(move |now| {
        // Keep the endpoint's clock with the virtual one so signatures stay current.
        hook_server.set_clock_offset((now - real_start).whole_seconds());
    });
    clock.push_event(3, Event::Stop);
    let mut refresher = refresher(&options, &file);
    refresher.run(&clock).unwrap();
    let waits = clock.waits();
    assert_eq!(waits.len(), 4);
    for wait in &waits[..3] {
        // 3600 s sessions: refresh 360 s (10 %) plus up to 90 s of jitter before expiry.
        assert!((3150..=3240).contains(&wait.as_secs()), "{waits:?}");
    }
    assert_eq!(server.request_count(), 4);
    let waited: Duration = waits[..3].iter().sum();
    assert_eq!(
        clock.now() - real_start,
        time::Duration::try_from(waited).unwrap()
    );
}

#[test]
fn reload_event_refreshes_at_once() {
    let server = start_server();
    let dir = TempDir::new("d-reload");
    let file = dir.path("credentials");
    let options = options(&server, &[]);
    let clock = ManualClock::new(OffsetDateTime::now_utc());
    clock.push_event(0, Event::Reload);
    clock.push_event(1, Event::Stop);
    let mut refresher = refresher(&options, &file);
    refresher.run(&clock).unwrap();
    assert_eq!(server.request_count(), 2, "start-up refresh and the reload");
}

#[test]
fn readers_never_see_torn_file_during_1000_refreshes() {
    let server = start_server();
    let dir = TempDir::new("d-torn");
    let file = dir.path("credentials");
    std::fs::write(&file, GOOD_FILE).unwrap();
    let options = options(&server, &["--session-duration", "900"]);
    let mut refresher = refresher(&options, &file);

    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let done = Arc::clone(&done);
        let file = file.clone();
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !done.load(Ordering::Relaxed) {
                let text = std::fs::read_to_string(&file).expect("the file must always exist");
                assert!(text.starts_with("# kept\n[default]\n"), "torn: {text:?}");
                for key in [
                    "aws_access_key_id = ",
                    "aws_secret_access_key = ",
                    "aws_session_token = ",
                ] {
                    let line = text
                        .lines()
                        .find(|l| l.starts_with(key))
                        .expect("key missing");
                    assert!(line.len() > key.len(), "empty value: {text:?}");
                }
                assert!(text.ends_with('\n'));
                reads += 1;
            }
            reads
        })
    };
    for _ in 0..1000 {
        refresher.refresh(OffsetDateTime::now_utc()).unwrap();
    }
    done.store(true, Ordering::Relaxed);
    let reads = reader.join().unwrap();
    assert!(reads > 1000, "the reader ran only {reads} times");
    assert_eq!(server.request_count(), 1000);
}

#[test]
fn kill_during_write_keeps_file_whole() {
    let server = start_server();
    let dir = TempDir::new("d-kill");
    let file = dir.path("credentials");
    std::fs::write(&file, GOOD_FILE).unwrap();
    let mut list = args(&[
        "update",
        "--once",
        "--certificate",
        pki("ec/leaf-fullchain.pem").to_str().unwrap(),
        "--private-key",
        pki("ec/leaf.key").to_str().unwrap(),
    ]);
    list.extend(identity_args(&server, EC_TRUST_ANCHOR_ARN));
    let mut seen_new = 0;
    for i in 0..40u64 {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ra-agent"))
            .args(&list)
            .env("AWS_SHARED_CREDENTIALS_FILE", &file)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Spread the kill over the run, which takes a few tens of milliseconds.
        std::thread::sleep(Duration::from_micros(2_000 + i * 1_500));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let text = std::fs::read_to_string(&file).unwrap();
        if text != GOOD_FILE {
            assert!(
                text.starts_with("# kept\n[default]\naws_access_key_id = ASIA"),
                "torn after kill {i}: {text:?}"
            );
            assert!(
                text.contains("aws_session_token = ") && text.ends_with('\n'),
                "torn after kill {i}: {text:?}"
            );
            seen_new += 1;
            std::fs::write(&file, GOOD_FILE).unwrap();
        }
    }
    let leftovers: Vec<PathBuf> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(".tmp."))
        .collect();
    // A killed writer may leave its temporary file; readers never look at it.
    assert!(leftovers.len() <= 40);
    assert!(
        seen_new > 0,
        "no run got far enough to write; the kill timing is too early"
    );
}

#[test]
fn rotated_certificate_is_picked_up_without_restart() {
    let server = start_server();
    let dir = TempDir::new("d-rotate");
    let file = dir.path("credentials");
    let cert = dir.path("cert.pem");
    let key = dir.path("key.pem");
    std::fs::copy(pki("rsa/leaf-fullchain.pem"), &cert).unwrap();
    std::fs::copy(pki("rsa/leaf.key"), &key).unwrap();
    let mut list = args(&[
        "update",
        "--certificate",
        cert.to_str().unwrap(),
        "--private-key",
        key.to_str().unwrap(),
    ]);
    list.extend(identity_args(&server, RSA_TRUST_ANCHOR_ARN));
    let options = cli::parse(list.into_iter().map(Into::into)).unwrap();
    let mut refresher = refresher(&options, &file);
    refresher.refresh(OffsetDateTime::now_utc()).unwrap();
    let first = server.issued().pop().unwrap();
    // Rotate to the directly issued leaf with its own key.
    std::fs::copy(pki("rsa/leaf-direct.pem"), &cert).unwrap();
    std::fs::copy(pki("rsa/leaf-direct.key"), &key).unwrap();
    refresher.refresh(OffsetDateTime::now_utc()).unwrap();
    assert_eq!(server.request_count(), 2);
    let second = server.issued().pop().unwrap();
    assert_ne!(first.access_key_id, second.access_key_id);
    assert_profile_written(&file, "default", &server);
}

/// The daemon as systemd runs it: READY after the first write, a token deleted and
/// re-created, SIGHUP to refresh at once (RELOADING), SIGTERM to stop (STOPPING, exit 0),
/// and `status` reading what it recorded.
#[test]
fn daemon_survives_token_recreation_and_speaks_sd_notify() {
    use std::os::unix::net::UnixDatagram;

    let server = start_server();
    let dir = TempDir::new("d-daemon");
    let token_dir = dir.path("token");
    let setup = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/softhsm/setup-token.sh");
    let make_token = || {
        let _ = std::fs::remove_dir_all(&token_dir);
        let out = std::process::Command::new(&setup)
            .arg(&token_dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    make_token();
    std::fs::write(dir.path("pin"), "1234").unwrap();
    let notify_path = dir.path("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let uri = format!(
        "pkcs11:token=ra-test;object=rsa-cert;type=cert?pin-source={}",
        dir.path("pin").display()
    );
    let file = dir.path("credentials");
    let status_file = dir.path("status.json");
    let mut list = args(&[
        "update",
        "--certificate",
        &uri,
        "--pkcs11-lib",
        "/usr/lib/softhsm/libsofthsm2.so",
        "--status-file",
        status_file.to_str().unwrap(),
    ]);
    list.extend(identity_args(&server, RSA_TRUST_ANCHOR_ARN));
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_ra-agent"))
        .args(&list)
        .env("AWS_SHARED_CREDENTIALS_FILE", &file)
        .env("SOFTHSM2_CONF", token_dir.join("softhsm2.conf"))
        .env("NOTIFY_SOCKET", &notify_path)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let receive = || {
        let mut buffer = [0u8; 256];
        let n = notify
            .recv(&mut buffer)
            .expect("no sd_notify message within 20 s");
        String::from_utf8_lossy(&buffer[..n]).into_owned()
    };
    let signal = |name: &str| {
        let ok = std::process::Command::new("kill")
            .args(["-s", name, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    };

    assert_eq!(receive(), "READY=1");
    assert_profile_written(&file, "default", &server);
    let first = std::fs::read_to_string(&file).unwrap();

    make_token();
    signal("HUP");
    assert_eq!(receive(), "RELOADING=1");
    assert_eq!(receive(), "READY=1");
    let second = std::fs::read_to_string(&file).unwrap();
    assert_ne!(first, second, "no refresh after SIGHUP");
    assert_profile_written(&file, "default", &server);
    assert_eq!(server.request_count(), 2);

    let output = run(
        &args(&[
            "status",
            "--json",
            "--status-file",
            status_file.to_str().unwrap(),
        ]),
        &file,
        &[],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(status["consecutiveFailures"], 0);
    assert_eq!(status["roleArn"], ROLE_ARN);
    assert!(
        status["credentialsExpiration"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );

    signal("TERM");
    assert_eq!(receive(), "STOPPING=1");
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // The status file outlives the agent, and `status` reports that.
    let output = run(
        &args(&["status", "--status-file", status_file.to_str().unwrap()]),
        &file,
        &[],
    );
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("NOT RUNNING"));
    assert!(
        stderr(&output).contains("is not running"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn credential_process_answers_from_fresh_cache_file() {
    let server = start_server();
    let dir = TempDir::new("d-cache");
    let cache = dir.path("cache.json");
    let mut list = args(&[
        "update",
        "--once",
        "--json-file",
        cache.to_str().unwrap(),
        "--certificate",
        pki("ec/leaf-fullchain.pem").to_str().unwrap(),
        "--private-key",
        pki("ec/leaf.key").to_str().unwrap(),
    ]);
    list.extend(identity_args(&server, EC_TRUST_ANCHOR_ARN));
    let output = run(&list, &dir.path("credentials"), &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(server.request_count(), 1);

    let mut list = args(&[
        "credential-process",
        "--cache-file",
        cache.to_str().unwrap(),
        "--certificate",
        pki("ec/leaf-fullchain.pem").to_str().unwrap(),
        "--private-key",
        pki("ec/leaf.key").to_str().unwrap(),
    ]);
    list.extend(identity_args(&server, EC_TRUST_ANCHOR_ARN));
    let output = run(&list, &dir.path("credentials"), &[]);
    assert_process_json(&output, &server);
    assert_eq!(
        server.request_count(),
        1,
        "a fresh cache must not reach the service"
    );

    // A stale cache falls back to signing.
    let stale = std::fs::read_to_string(&cache).unwrap();
    let expiration = serde_json::from_str::<serde_json::Value>(&stale).unwrap()["Expiration"]
        .as_str()
        .unwrap()
        .to_owned();
    std::fs::write(&cache, stale.replace(&expiration, "2026-01-01T00:00:00Z")).unwrap();
    let output = run(&list, &dir.path("credentials"), &[]);
    assert_process_json(&output, &server);
    assert_eq!(server.request_count(), 2);
}

#[test]
fn config_file_outputs_with_mode_and_flags_override() {
    use std::os::unix::fs::MetadataExt as _;

    let server = start_server();
    let dir = TempDir::new("d-config");
    let config = serde_json::json!({
        "certificate": pki("ec/leaf-fullchain.pem"),
        "privateKey": pki("ec/leaf.key"),
        "trustAnchorArn": EC_TRUST_ANCHOR_ARN,
        "profileArn": PROFILE_ARN,
        "roleArn": "arn:aws:iam::123456789012:role/Overridden",
        "endpoint": server.url(),
        "caBundle": server.ca_pem_path().unwrap(),
        "sessionDuration": 900,
        "outputs": [
            {"type": "credentials", "path": dir.path("out/credentials"), "profile": "pos", "mode": "0640", "group": "0"},
            {"type": "json", "path": dir.path("out/credentials.json")}
        ]
    });
    std::fs::write(dir.path("config.json"), config.to_string()).unwrap();
    let list = args(&[
        "update",
        "--once",
        "--config",
        dir.path("config.json").to_str().unwrap(),
        "--role-arn",
        ROLE_ARN,
    ]);
    let output = run(&list, &dir.path("unused"), &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_profile_written_mode(&dir.path("out/credentials"), "pos", &server, 0o640);
    assert_eq!(
        std::fs::metadata(dir.path("out/credentials"))
            .unwrap()
            .gid(),
        0
    );
    // A directory the agent creates for a group output is reachable by that group.
    let out_dir = std::fs::metadata(dir.path("out")).unwrap();
    assert_eq!(out_dir.mode() & 0o777, 0o750);
    assert_eq!(out_dir.gid(), 0);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path("out/credentials.json")).unwrap())
            .unwrap();
    assert_eq!(
        json["AccessKeyId"],
        server.issued().pop().unwrap().access_key_id.as_str()
    );
    assert!(
        !dir.path("unused").exists(),
        "configured outputs replace the default file"
    );

    std::fs::write(
        dir.path("bad.json"),
        r#"{"outputs": [{"type": "yaml", "path": "/tmp/x"}]}"#,
    )
    .unwrap();
    let output = run(
        &args(&[
            "update",
            "--once",
            "--config",
            dir.path("bad.json").to_str().unwrap(),
        ]),
        &dir.path("unused"),
        &[],
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("yaml"), "{}", stderr(&output));
    let output = run(
        &args(&["update", "--once", "--mode", "0644"]),
        &dir.path("unused"),
        &[],
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("other users"),
        "{}",
        stderr(&output)
    );
}

fn assert_profile_written_mode(file: &Path, profile: &str, server: &Server, mode: u32) {
    use std::os::unix::fs::MetadataExt as _;
    let text = std::fs::read_to_string(file).unwrap();
    let issued = server.issued().pop().unwrap();
    assert!(
        text.contains(&format!(
            "[{profile}]\naws_access_key_id = {}\n",
            issued.access_key_id
        )),
        "{text}"
    );
    assert_eq!(std::fs::metadata(file).unwrap().mode() & 0o777, mode);
}
