//! The upload flow against a stand-in Hetzner API and a real sshd on
//! loopback acting as the rescue system (writing a file, not /dev/sda).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::mock::{Fault, Mock};
use common::mock::{server_type_json, snapshot_json};
use common::sshd::Sshd;
use common::{TOKEN, client, client_options, disk, make_image, make_image_for, options, within};
use hetzner::Interrupt;
use hetzner::api::types::Image;
use hetzner::image::ImageInfo;
use hetzner::upload::{self, CleanupOptions, Outcome, UploadError, UploadOptions, Written};

/// A stand-in API wired to a fresh sshd, an image, and options.
struct Setup {
    mock: Mock,
    sshd: Sshd,
    dir: tempfile::TempDir,
    image: ImageInfo,
    options: UploadOptions,
}

/// The old disk's bytes: what a write must not leave under the image.
const OLD: u8 = 0xA5;

fn setup(mib: usize) -> Setup {
    let dir = tempfile::tempdir().expect("temporary directory");
    let image = make_image(dir.path(), mib);
    // A used disk, larger than the image.
    std::fs::write(disk(dir.path()), vec![OLD; (mib + 1) << 20]).expect("the old disk");
    let sshd = Sshd::start();
    let mock = Mock::start(TOKEN);
    mock.state().authorized_keys = Some(sshd.authorized_keys.clone());
    mock.state().rescue_flag = Some(sshd.rescue_flag.clone());
    let options = options(sshd.port, &sshd.user, &disk(dir.path()));
    Setup {
        mock,
        sshd,
        dir,
        image,
        options,
    }
}

impl Setup {
    fn upload(&self) -> Result<Outcome, UploadError> {
        let c = client(&self.mock.url, TOKEN);
        upload::upload(&c, &self.image, &self.options, &Interrupt::new())
    }

    /// Upload with a client that gives up on a request after `timeout`.
    fn upload_with_timeout(&self, timeout: Duration) -> Result<Outcome, UploadError> {
        self.upload_with(hetzner::api::ClientOptions {
            request_timeout: timeout,
            ..client_options()
        })
    }

    /// Upload with a client of `options`.
    fn upload_with(&self, options: hetzner::api::ClientOptions) -> Result<Outcome, UploadError> {
        let c = hetzner::api::Client::new(&self.mock.url, hetzner::Token::new(TOKEN), options)
            .expect("client");
        upload::upload(&c, &self.image, &self.options, &Interrupt::new())
    }

    /// How many calls start with `METHOD path`.
    fn count(&self, method_path: &str) -> usize {
        self.mock
            .call_lines()
            .iter()
            .filter(|l| l.starts_with(method_path))
            .count()
    }

    /// Nothing temporary is left, and every request and response fit the API description.
    #[track_caller]
    fn assert_nothing_left(&self) {
        let st = self.mock.state();
        assert!(
            st.servers.is_empty(),
            "servers left: {:?}\ncalls: {:?}",
            st.servers.keys(),
            self.calls(&st)
        );
        assert!(
            st.ssh_keys.is_empty(),
            "SSH keys left: {:?}",
            st.ssh_keys.keys()
        );
        assert!(
            st.violations.is_empty(),
            "not as the API documents: {:#?}",
            st.violations
        );
    }

    fn calls(&self, st: &common::mock::State) -> Vec<String> {
        st.calls
            .iter()
            .map(|c| format!("{} {} {}", c.method, c.path, c.status))
            .collect()
    }

    /// Upload with `fault` injected; the error message.
    fn fail_with(&self, faults: Vec<Fault>) -> String {
        self.mock.state().faults = faults;
        self.upload().expect_err("the upload must fail").to_string()
    }

    /// Upload; it must make a new snapshot.
    #[track_caller]
    fn uploaded(&self) -> (Image, Written) {
        match self.upload() {
            Ok(Outcome::Uploaded(snap, w)) => (snap, w),
            other => panic!(
                "expected a new snapshot, got {other:?}\nsshd: {}",
                self.sshd.log_text()
            ),
        }
    }

    /// The disk starts with the image's bytes; after them the old disk's.
    #[track_caller]
    fn assert_disk_holds_the_image(&self) {
        let written = std::fs::read(disk(self.dir.path())).expect("the written disk");
        let original = std::fs::read(&self.image.path).expect("the image");
        assert!(written.len() >= original.len(), "the disk shrank");
        assert!(
            written[..original.len()] == original[..],
            "the written bytes differ from the image"
        );
        assert!(written[original.len()..].iter().all(|b| *b == OLD));
    }

    /// `-o json` of `outcome` is the snapshot `name` (the test's directory
    /// shown as `[dir]`).
    #[track_caller]
    fn assert_report(&self, name: &str, outcome: &Outcome) {
        let json = upload::Report::new(&self.image, outcome)
            .to_json()
            .replace(&self.dir.path().display().to_string(), "[dir]");
        insta::assert_snapshot!(name, json);
    }

    /// Nothing was written: the disk holds only the old bytes.
    #[track_caller]
    fn assert_disk_untouched(&self) {
        let bytes = std::fs::read(disk(self.dir.path())).expect("the disk");
        assert!(bytes.iter().all(|b| *b == OLD), "the disk was written");
    }

    /// Only lookups were made: nothing was created.
    #[track_caller]
    fn assert_nothing_created(&self) {
        let lines = self.mock.call_lines();
        assert!(
            lines.iter().all(|l| l.starts_with("GET ")),
            "something was created: {lines:#?}"
        );
        let st = self.mock.state();
        assert!(st.violations.is_empty(), "{:#?}", st.violations);
    }

    #[track_caller]
    fn assert_called(&self, method: &str, path_prefix: &str) {
        let lines = self.mock.call_lines();
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("{method} {path_prefix}"))),
            "no {method} {path_prefix}… in {lines:#?}"
        );
    }
}

#[test]
fn happy_path_writes_the_image_then_a_second_upload_is_skipped() {
    within(120, || {
        let s = setup(6);
        let (snap, w) = s.uploaded();
        // blkdiscard fails on a file: every byte written, verified once.
        assert_eq!((w.attempts, w.sparse), (1, false), "{w:?}");
        assert_eq!(w.sha256, s.image.sha256);
        assert_eq!(w.server_type, "cx23");
        s.assert_disk_holds_the_image();
        s.assert_report(
            "report_created",
            &Outcome::Uploaded(snap.clone(), w.clone()),
        );
        assert_eq!(snap.kind, "snapshot");
        let sha = &s.image.sha256;
        assert_eq!(snap.labels["openclaw-image/sha256-1"], sha[..32]);
        assert_eq!(snap.labels["openclaw-image/sha256-2"], sha[32..]);
        assert_eq!(snap.labels["openclaw-image/openclaw-version"], "2026.9.6");
        assert_eq!(snap.labels["openclaw-image/spec"], "openclaw-appliance");
        assert_eq!(snap.labels["openclaw-image/build-date"], "2025-11-24");
        assert!(
            snap.description.contains(sha.as_str()),
            "{}",
            snap.description
        );
        for (m, p) in [
            ("POST", "/ssh_keys"),
            ("POST", "/servers"),
            ("GET", "/actions"),
            ("DELETE", "/servers/"),
            ("DELETE", "/ssh_keys/"),
        ] {
            s.assert_called(m, p);
        }
        {
            let st = s.mock.state();
            let create = st
                .calls
                .iter()
                .find(|c| c.method == "POST" && c.path == "/servers")
                .expect("POST /servers");
            let body = create.body.as_ref().expect("a body");
            assert_eq!(body["start_after_create"], false);
            assert_eq!(body["labels"]["openclaw-image/temporary"], "upload");
            let rescue = st
                .calls
                .iter()
                .find(|c| c.path.ends_with("/enable_rescue"))
                .expect("enable_rescue");
            assert_eq!(rescue.body.as_ref().expect("a body")["type"], "linux64");
        }
        s.assert_nothing_left();
        let usage = upload::usage(&snap, "cx23", &s.options);
        assert!(
            usage.contains(&format!(
                "hcloud server create --name openclaw --image {}",
                snap.id
            )),
            "{usage}"
        );
        assert!(usage.contains("--user-data-from-file"), "{usage}");
        assert!(
            usage.contains(&format!("hcloud server rebuild --image {}", snap.id)),
            "{usage}"
        );

        // The same image again: found by its sha256 labels, nothing uploaded.
        let before = s.mock.state().calls.len();
        match s.upload() {
            Ok(o @ Outcome::AlreadyPresent(_)) => s.assert_report("report_already_existed", &o),
            other => panic!("expected the duplicate to be skipped, got {other:?}"),
        }
        let st = s.mock.state();
        assert!(
            st.calls[before..].iter().all(|c| c.method == "GET"),
            "the skipped upload changed something: {:?}",
            s.calls(&st)[before..].to_vec()
        );
    });
}

#[test]
fn failure_after_the_server_exists_leaves_nothing() {
    within(60, || {
        let s = setup(2);
        let err = s.fail_with(vec![
            Fault::error(
                "POST",
                "/actions/poweron",
                503,
                "resource_unavailable",
                "the host is in maintenance",
            ),
            // The first delete finds the server busy: it is retried.
            Fault::error("DELETE", "/servers/", 423, "locked", "server is locked"),
        ]);
        assert!(err.contains("powering on"), "{err}");
        assert!(
            err.contains("503 resource_unavailable: the host is in maintenance"),
            "{err}"
        );
        s.assert_called("DELETE", "/servers/");
        s.assert_called("DELETE", "/ssh_keys/");
        let lines = s.mock.call_lines();
        let deletes = lines
            .iter()
            .filter(|l| l.starts_with("DELETE /servers/"))
            .count();
        assert_eq!(
            deletes, 2,
            "the locked server was not deleted again: {lines:#?}"
        );
        s.assert_nothing_left();
    });
}

#[test]
fn api_error_is_shown_with_code_and_message() {
    within(60, || {
        let s = setup(1);
        let err = s.fail_with(vec![Fault::error(
            "POST",
            "/servers",
            422,
            "invalid_input",
            "invalid input in field 'location'",
        )]);
        assert_eq!(
            err,
            "creating the temporary server: POST /servers: the Hetzner API answered 422 invalid_input: invalid input in field 'location'"
        );
        s.assert_called("DELETE", "/ssh_keys/");
        s.assert_nothing_left();
    });
}

#[test]
fn bad_token_says_what_to_fix_and_never_shows_the_token() {
    within(30, || {
        let dir = tempfile::tempdir().expect("temporary directory");
        let image = make_image(dir.path(), 1);
        let mock = Mock::start(TOKEN);
        let secret = "wrong-token-that-must-not-appear";
        let c = client(&mock.url, secret);
        let err = upload::upload(&c, &image, &UploadOptions::default(), &Interrupt::new())
            .expect_err("a wrong token must fail")
            .to_string();
        assert!(
            err.contains("the Hetzner API refused the token (401 unauthorized)"),
            "{err}"
        );
        assert!(err.contains("HCLOUD_TOKEN"), "{err}");
        assert!(!err.contains(secret), "the token leaked: {err}");
        assert!(
            mock.state().calls.iter().all(|c| c.method == "GET"),
            "nothing may be created"
        );
    });
}

#[test]
fn rate_limits_are_honoured_and_pages_followed() {
    within(30, || {
        let mock = Mock::start(TOKEN);
        for i in 0..3 {
            mock.state().images.insert(
                i,
                serde_json::json!({"id": i, "type": "snapshot", "status": "available", "name": null,
                    "description": "", "image_size": 0.4, "disk_size": 40, "created": "2026-11-24T10:00:00+00:00",
                    "created_from": null, "bound_to": null, "os_flavor": "debian", "os_version": null,
                    "rapid_deploy": false, "protection": {"delete": false}, "deprecated": null, "deleted": null,
                    "labels": {"openclaw-image/sha256-1": "a".repeat(32), "openclaw-image/sha256-2": if i == 1 { "c" } else { "b" }.repeat(32)},
                    "architecture": "x86"}),
            );
        }
        mock.state().per_page = 1;
        mock.state().rate_limit = 1;
        let started = Instant::now();
        let found = upload::find_existing(
            &client(&mock.url, TOKEN),
            &format!("{}{}", "a".repeat(32), "b".repeat(32)),
        )
        .expect("listing snapshots");
        assert!(
            started.elapsed() >= Duration::from_millis(900),
            "the 429 was not waited for"
        );
        let ids: Vec<i64> = found.iter().map(|i| i.id).collect();
        assert_eq!(ids, [0, 2]);
        let st = mock.state();
        let pages: Vec<String> = st
            .calls
            .iter()
            .filter(|c| c.status == 200)
            .map(|c| {
                c.query
                    .iter()
                    .find(|(k, _)| k == "page")
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            })
            .collect();
        assert_eq!(pages, ["1", "2"]);
        assert_eq!(st.calls[0].status, 429);
        assert!(st.violations.is_empty(), "{:#?}", st.violations);
    });
}

/// A server and an SSH key named `name` with `labels`, as a killed upload
/// leaves them.
fn leave(c: &hetzner::api::Client, name: &str, labels: &[(&str, &str)]) {
    let labels: hetzner::labels::Labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    c.create_ssh_key(&hetzner::api::types::CreateSshKey {
        name,
        public_key: "ssh-ed25519 AAAA x",
        labels: &labels,
    })
    .expect("key");
    c.create_server(&hetzner::api::types::CreateServer {
        name,
        server_type: "cx23",
        image: "debian-13",
        location: "fsn1",
        start_after_create: false,
        ssh_keys: vec![],
        labels: &labels,
    })
    .expect("server");
}

#[test]
fn cleanup_removes_leftovers_by_label_only() {
    within(30, || {
        let mock = Mock::start(TOKEN);
        let c = client(&mock.url, TOKEN);
        leave(&c, "left-1", &[("openclaw-image/temporary", "upload")]);
        leave(&c, "keep", &[("team", "web")]);
        let cleaned = upload::cleanup(&c, &CleanupOptions::default());
        assert!(cleaned.errors.is_empty(), "{:?}", cleaned.errors);
        let names: Vec<(&str, &str)> = cleaned
            .deleted
            .iter()
            .map(|r| (r.kind, r.name.as_str()))
            .collect();
        assert_eq!(names, [("server", "left-1"), ("ssh_key", "left-1")]);
        let st = mock.state();
        assert_eq!(st.servers.len(), 1);
        assert_eq!(st.ssh_keys.len(), 1);
        assert!(st.violations.is_empty(), "{:#?}", st.violations);
    });
}

/// The child half of `interrupt_mid_stream_leaves_nothing`: runs an upload
/// in its own process (so it can get a real SIGINT) from the parent's
/// `spec`, then exits.
fn child_upload(spec: &str) -> ! {
    let v: serde_json::Value = serde_json::from_str(spec).expect("child spec");
    let s = |k: &str| v[k].as_str().expect(k).to_string();
    let image = ImageInfo::load(std::path::Path::new(&s("image"))).expect("image");
    let mut opts = options(
        v["port"].as_u64().expect("port") as u16,
        &s("user"),
        std::path::Path::new(&s("target")),
    );
    opts.max_rate = Some(1 << 20);
    let interrupt = Interrupt::on_ctrl_c().expect("Ctrl-C handler");
    let result = upload::upload(&client(&s("url"), TOKEN), &image, &opts, &interrupt);
    eprintln!("child: result: {result:?}");
    std::process::exit(if result.is_ok() { 0 } else { 3 });
}

/// Runs itself again as the child (`HETZNER_TEST_CHILD` set), which
/// uploads until the parent's SIGINT.
#[test]
fn interrupt_mid_stream_leaves_nothing() {
    if let Ok(spec) = std::env::var("HETZNER_TEST_CHILD") {
        child_upload(&spec);
    }
    within(120, || {
        let s = setup(8);
        let spec = serde_json::json!({
            "url": s.mock.url, "image": s.image.path.display().to_string(), "port": s.sshd.port,
            "user": s.sshd.user, "target": disk(s.dir.path()).display().to_string(),
        });
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "interrupt_mid_stream_leaves_nothing",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("HETZNER_TEST_CHILD", spec.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting the child upload");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut log = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !log.iter().any(|l: &String| l.contains("streaming")) {
            match rx.recv_timeout(Duration::from_secs(1)) {
                Ok(line) => log.push(line),
                Err(_) => assert!(
                    Instant::now() < deadline,
                    "the stream never started: {log:#?}"
                ),
            }
            assert!(
                child.try_wait().expect("child status").is_none(),
                "the child ended early: {log:#?}"
            );
        }
        std::thread::sleep(Duration::from_millis(1500));
        let pid = child.id().to_string();
        let killed = Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .expect("kill -INT");
        assert!(killed.success());
        let status = loop {
            if let Some(st) = child.try_wait().expect("child status") {
                break st;
            }
            assert!(
                Instant::now() < deadline,
                "the child did not stop after SIGINT"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        log.extend(rx.try_iter());
        assert_eq!(
            status.code(),
            Some(3),
            "the interrupted upload must fail: {log:#?}"
        );
        let text = log.join("\n");
        assert!(text.contains("Interrupted"), "{text}");
        // --debug logs each call, never the token.
        assert!(text.contains("api: POST /servers → 201"), "{text}");
        assert!(!text.contains(TOKEN), "the token leaked into the log");
        assert!(
            !text.contains("taking the snapshot"),
            "it went on after SIGINT: {text}"
        );
        s.assert_called("DELETE", "/servers/");
        s.assert_nothing_left();
        assert!(s.mock.state().images.is_empty(), "no snapshot may be made");
    });
}

#[test]
fn a_normal_system_instead_of_rescue_is_refused_before_dd() {
    within(60, || {
        let s = setup(2);
        s.mock.state().rescue_does_not_take = true;
        let err = s
            .upload()
            .expect_err("a normal system must be refused")
            .to_string();
        assert!(
            err.starts_with("checking the rescue system: the host name is `openclaw-upload-normal`, not `rescue`"),
            "{err}"
        );
        assert!(err.contains("nothing was written"), "{err}");
        s.assert_disk_untouched();
        s.assert_nothing_left();
        assert!(s.mock.state().images.is_empty(), "no snapshot may be made");
    });
}

#[test]
fn a_failing_discard_means_every_byte_is_written_and_verified() {
    within(60, || {
        // The loopback "rescue" refuses BLKDISCARD (as on a file).
        let s = setup(1);
        let (_, w) = s.uploaded();
        assert_eq!((w.attempts, w.sparse), (1, false), "{w:?}");
        s.assert_disk_holds_the_image();
        s.assert_nothing_left();
    });
}

#[test]
fn a_discard_that_keeps_old_bytes_is_caught_and_written_again_in_full() {
    within(60, || {
        let mut s = setup(9);
        // A 4 MiB zero run that `dd bs=4M conv=sparse` skips.
        let mut bytes = std::fs::read(&s.image.path).expect("the image");
        bytes[4 << 20..8 << 20].fill(0);
        s.image = common::image_of(s.dir.path(), &bytes, "amd64");
        // blkdiscard "succeeds" but the old bytes stay: the sparse write
        // leaves them under the image's zero run; the read-back sees it.
        std::fs::write(&s.sshd.discard_ok, "").expect("discard flag");
        let (_, w) = s.uploaded();
        assert_eq!((w.attempts, w.sparse), (2, false), "{w:?}");
        s.assert_disk_holds_the_image();
        s.assert_nothing_left();
    });
}

#[test]
fn a_short_write_is_caught_by_the_device_hash_and_written_again() {
    within(60, || {
        let s = setup(3);
        std::fs::write(&s.sshd.short_write, "").expect("short-write flag");
        let (_, w) = s.uploaded();
        assert_eq!(w.attempts, 2, "{w:?}");
        s.assert_disk_holds_the_image();
        s.assert_nothing_left();
    });
}

#[test]
fn a_second_bad_write_fails_with_both_hashes_and_no_snapshot() {
    within(60, || {
        let s = setup(2);
        std::fs::write(&s.sshd.short_write, "always").expect("short-write flag");
        let err = s
            .upload()
            .expect_err("two short writes must fail")
            .to_string();
        assert!(
            err.starts_with(
                "checking the written disk: after two writes the server's disk still hashes to "
            ),
            "{err}"
        );
        assert!(
            err.contains(&format!("the image to {}", s.image.sha256)),
            "{err}"
        );
        assert!(
            s.mock
                .call_lines()
                .iter()
                .all(|l| !l.contains("create_image")),
            "a snapshot was asked for"
        );
        assert!(s.mock.state().images.is_empty(), "no snapshot may be made");
        s.assert_nothing_left();
    });
}

#[test]
fn locked_on_enable_rescue_and_bad_gateways_are_retried() {
    within(60, || {
        let s = setup(1);
        s.mock.state().faults = vec![
            Fault::error("POST", "/enable_rescue", 423, "locked", "server is locked").times(2),
            Fault::error("GET", "/actions", 502, "", "").times(1),
            Fault::error("GET", "/server_types", 504, "", "").times(1),
            Fault::error("POST", "/actions/shutdown", 409, "conflict", "busy").times(1),
        ];
        let (_, w) = s.uploaded();
        assert_eq!(w.attempts, 1);
        let rescue = s
            .mock
            .call_lines()
            .iter()
            .filter(|l| l.contains("/actions/enable_rescue"))
            .cloned()
            .collect::<Vec<_>>();
        assert_eq!(rescue.len(), 3, "{rescue:#?}");
        assert!(
            rescue[0].ends_with(" 423") && rescue[2].ends_with(" 201"),
            "{rescue:#?}"
        );
        s.assert_nothing_left();
    });
}

#[test]
fn a_server_created_by_a_timed_out_post_is_found_by_label_and_deleted() {
    within(60, || {
        let s = setup(1);
        s.mock.state().faults = vec![Fault::late("POST", "/servers", Duration::from_millis(1500))];
        let err = s
            .upload_with_timeout(Duration::from_millis(500))
            .expect_err("the create times out")
            .to_string();
        assert!(
            err.starts_with("creating the temporary server: POST /servers"),
            "{err}"
        );
        assert!(
            err.contains("no answer from the Hetzner API within 0.5 s (timed out)"),
            "{err}"
        );
        // Not sent twice (it may have worked), but found and deleted.
        assert_eq!(s.count("POST /servers "), 1);
        s.assert_called("GET", "/servers");
        s.assert_called("DELETE", "/servers/");
        s.assert_nothing_left();
    });
}

/// Upload with `server_type` in `location`; pre-flight must refuse with an
/// error containing each of `expected`, before anything is created.
#[track_caller]
fn check_refused(s: &mut Setup, server_type: Option<&str>, location: &str, expected: &[&str]) {
    s.options.server_type = server_type.map(str::to_string);
    s.options.location = location.to_string();
    let err = s.upload().expect_err("pre-flight must refuse").to_string();
    for e in expected {
        assert!(err.contains(e), "{err}\ndoes not say: {e}");
    }
    s.assert_nothing_created();
    s.assert_nothing_left();
}

#[test]
fn preflight_refuses_before_anything_exists() {
    within(60, || {
        let mut s = setup(2);
        let cases: [(Option<&str>, &str, &[&str]); 4] = [
            (
                Some("cx11"),
                "fsn1",
                &["--server-type `cx11` is deprecated; choose one of cx23, cx33"],
            ),
            (
                Some("cpx11"),
                "fsn1",
                &["`cpx11` is not offered in --location fsn1; it is in: ash"],
            ),
            (
                None,
                "hel1",
                &[
                    "the default server type `cx23` is not offered in --location hel1",
                    "none here; try another --location",
                ],
            ),
            (
                Some("cx99"),
                "fsn1",
                &["--server-type `cx99` does not exist; types that would work in fsn1: cx23, cx33"],
            ),
        ];
        for (server_type, location, expected) in cases {
            check_refused(&mut s, server_type, location, expected);
        }
        s.mock.state().server_types = vec![
            server_type_json("cx23", "x86", 0.001, &["fsn1"], false),
            server_type_json("cx43", "x86", 160.0, &["fsn1"], false),
        ];
        check_refused(
            &mut s,
            None,
            "fsn1",
            &[
                "the default server type `cx23` has a 0.001 GB disk",
                "choose a type with a larger disk: cx43",
            ],
        );
    });
}

#[test]
fn an_arm_image_needs_an_arm_type_and_gets_cax11_by_default() {
    within(60, || {
        let mut s = setup(1);
        s.image = make_image_for(s.dir.path(), 1, "arm64");
        check_refused(
            &mut s,
            Some("cx23"),
            "fsn1",
            &["`cx23` is x86, the image is arm: choose one of cax11"],
        );
        s.options.server_type = None;
        let (_, w) = s.uploaded();
        assert_eq!(w.server_type, "cax11");
        let st = s.mock.state();
        let create = st
            .calls
            .iter()
            .find(|c| c.method == "POST" && c.path == "/servers")
            .expect("POST /servers");
        assert_eq!(
            create.body.as_ref().expect("a body")["server_type"],
            "cax11"
        );
    });
}

#[test]
fn snapshots_are_done_only_when_available() {
    within(60, || {
        let mut s = setup(1);
        // An earlier upload's snapshot, still `creating`: waited for.
        s.mock
            .state()
            .images
            .insert(7, snapshot_json(7, "creating", &s.image.sha256));
        s.mock.state().image_polls.insert(7, 3);
        match s.upload() {
            Ok(Outcome::AlreadyPresent(img)) => {
                assert_eq!((img.id, img.status.as_str()), (7, "available"))
            }
            other => panic!("expected the creating snapshot to be waited for: {other:?}"),
        }
        assert_eq!(s.count("GET /images/7 "), 4);
        s.assert_nothing_created();

        // An `unavailable` one does not count; the new one is waited for.
        s.mock
            .state()
            .images
            .insert(7, snapshot_json(7, "unavailable", &s.image.sha256));
        s.mock.state().creating_polls = 2;
        let (snap, _) = s.uploaded();
        assert_ne!(snap.id, 7);
        assert_eq!(snap.status, "available");
        assert_eq!(s.count(&format!("GET /images/{} ", snap.id)), 3);
        s.assert_nothing_left();

        // A snapshot stuck in `creating` fails after the action timeout;
        // the server is still deleted.
        s.options.force = true;
        s.mock.state().creating_polls = 1_000_000;
        let err = s
            .upload_with(hetzner::api::ClientOptions {
                action_timeout: Duration::from_millis(300),
                ..client_options()
            })
            .expect_err("a stuck snapshot must fail")
            .to_string();
        assert!(
            err.contains("to become available: still `creating` after"),
            "{err}"
        );
        s.assert_nothing_left();
    });
}

#[test]
fn cleanup_spares_young_resources_and_goes_on_past_errors() {
    within(30, || {
        let mock = Mock::start(TOKEN);
        let c = client(&mock.url, TOKEN);
        for name in ["old-1", "old-2", "young"] {
            leave(&c, name, &[("openclaw-image/temporary", "upload")]);
        }
        let now = image_spec::time::rfc3339(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_secs() as i64,
        );
        {
            let mut guard = mock.state();
            let st = &mut *guard;
            for map in [&mut st.servers, &mut st.ssh_keys] {
                for v in map.values_mut().filter(|v| v["name"] == "young") {
                    v["created"] = serde_json::json!(now);
                }
            }
            st.faults = vec![Fault::error(
                "DELETE",
                "/servers/",
                500,
                "server_error",
                "try later",
            )];
        }
        let cleaned = upload::cleanup(&c, &CleanupOptions::default());
        assert_eq!(cleaned.errors.len(), 1, "{:?}", cleaned.errors);
        assert!(
            cleaned.errors[0].contains("500 server_error: try later"),
            "{:?}",
            cleaned.errors
        );
        let deleted: Vec<(&str, &str)> = cleaned
            .deleted
            .iter()
            .map(|r| (r.kind, r.name.as_str()))
            .collect();
        assert_eq!(
            deleted,
            [
                ("server", "old-2"),
                ("ssh_key", "old-1"),
                ("ssh_key", "old-2")
            ]
        );
        let kept: Vec<&str> = cleaned.kept.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(kept, ["young", "young"]);
        assert!(cleaned.summary().contains("--all deletes it"));
        insta::assert_snapshot!("cleanup_report", cleaned.to_json().replace(&now, "[now]"));

        let all = upload::cleanup(
            &c,
            &CleanupOptions {
                all: true,
                ..CleanupOptions::default()
            },
        );
        assert!(all.errors.is_empty(), "{:?}", all.errors);
        assert_eq!(all.deleted.len(), 3);
        let st = mock.state();
        assert!(st.servers.is_empty() && st.ssh_keys.is_empty());
        assert!(st.violations.is_empty(), "{:#?}", st.violations);
    });
}
