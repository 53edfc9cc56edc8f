//! The remote cache and sharded runs (`cargo bench -p qpf --bench qpf -- remote`, or
//! `remote-example` / `remote-shards` alone):
//! - the example project (65 invocations) served from a warm remote with a cold local cache,
//!   against all-local hits, for each backend (a folder, `s3s` in this process, moto's server and
//!   the REAPI server buildbox-casd when `./dev tools` has installed them);
//! - a generated 20,000-invocation project (the trivial echo guest) run as 1, 2 and 4 shard
//!   processes into `s3s`, with the CPU time of each shard, and its gather from the warm remote
//!   (`s3s`, then buildbox-casd).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::s3::{ACCESS_KEY, S3s, SECRET_KEY};

/// Runs `qpf ARGS` with the S3 environment; returns wall time and the child's user + system CPU.
fn run(args: &[&str], endpoint: &str) -> (Duration, Duration) {
    let started = Instant::now();
    let out = std::process::Command::new("/usr/bin/time")
        .args(["-f", "cpu %U %S"])
        .arg(crate::qpf_bin())
        .args(args)
        .env("QPF_LOG", "error")
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT", endpoint)
        .env("AWS_ALLOW_HTTP", "true")
        .output()
        .expect("/usr/bin/time and qpf run");
    let wall = started.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "qpf {args:?}: {err}");
    (wall, cpu(&err))
}

/// The `cpu USER SYSTEM` line `/usr/bin/time` printed last.
fn cpu(stderr: &str) -> Duration {
    let line = stderr.lines().rev().find(|l| l.starts_with("cpu ")).unwrap_or("cpu 0 0");
    let secs: f64 = line.split_whitespace().skip(1).filter_map(|n| n.parse::<f64>().ok()).sum();
    Duration::from_secs_f64(secs)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// moto's server, when `./dev tools` installed it: (child, endpoint).
fn moto() -> Option<(std::process::Child, String)> {
    use std::io::BufRead;
    let server = crate::target_dir().join("qpf-tools/moto/bin/moto_server");
    if !server.is_file() {
        return None;
    }
    let mut child = std::process::Command::new("timeout")
        .arg("1800")
        .arg(server)
        .args(["-H", "127.0.0.1", "-p", "0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    let mut lines = std::io::BufReader::new(child.stderr.take()?).lines();
    let endpoint = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| l.split("Running on ").nth(1).map(|u| u.trim().to_owned()))?;
    std::thread::spawn(move || lines.for_each(drop));
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    agent.put(&format!("{endpoint}/cache")).send_empty().ok()?;
    Some((child, endpoint))
}

/// Stops a server started under `timeout` (which passes SIGTERM on; a SIGKILL would leave the
/// server running until its time is up).
fn stop(mut child: std::process::Child) {
    let _ = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
}

/// buildbox-casd (a REAPI server), when `./dev tools` has installed it, on a Unix socket in
/// `dir`: (child, `unix://` URL).
fn casd(dir: &Path) -> Option<(std::process::Child, String)> {
    let server = crate::target_dir().join("qpf-tools/buildbox/buildbox-casd");
    if !server.is_file() {
        return None;
    }
    let socket = dir.join("casd.sock");
    let child = std::process::Command::new("timeout")
        .arg("1800")
        .arg(server)
        .arg(format!("--bind=unix:{}", socket.display()))
        .arg(dir.join("cache"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let started = Instant::now();
    while !socket.exists() && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
    }
    if !socket.exists() {
        eprintln!("buildbox-casd did not listen within 30 s: the REAPI rows are left out");
        stop(child);
        return None;
    }
    Some((child, format!("unix://{}", socket.display())))
}

/// The example project: local hits against remote hits, per backend. Every timed run that
/// writes happens in a fresh copy made beforehand, and every copy is kept until the end: deleting
/// the outputs and cache entries right before a run would time ext4's slow inode allocation after
/// a delete, not QPF (see the 20,000-invocation bench).
fn example(backends: &[(&str, String, String)]) {
    let project = crate::example_project();
    let p = project.path().to_str().expect("utf-8");
    crate::qpf(&["extract", "--project", p]);
    let local: Vec<Duration> = (0..10).map(|_| run(&["extract", "--project", p], "").0).collect();
    let local = median(local);
    println!("{:<52} {:>12}", "example project (65 inv.): all local hits", crate::fmt(local));
    let mut keep: Vec<tempfile::TempDir> = Vec::new();
    // The same hits with the outputs to write: what a remote hit cannot avoid either.
    let written: Vec<Duration> = (0..10)
        .map(|_| {
            let copy = crate::example_project();
            let status = std::process::Command::new("cp")
                .arg("-r")
                .arg(project.path().join(".qpf"))
                .arg(copy.path().join(".qpf"))
                .status()
                .expect("cp runs");
            assert!(status.success());
            let wall = run(&["extract", "--project", copy.path().to_str().expect("utf-8")], "").0;
            keep.push(copy);
            wall
        })
        .collect();
    let written = median(written);
    println!(
        "{:<52} {:>12}",
        "  all local hits, outputs to write (fresh copy)",
        format!("{} ({:.2}x)", crate::fmt(written), written.as_secs_f64() / local.as_secs_f64())
    );
    for (name, url, endpoint) in backends {
        // Fill the remote once, then read it from fresh copies (no local cache, no outputs).
        let fill = crate::example_project();
        run(&["extract", "--project", fill.path().to_str().expect("utf-8"), "--remote-cache", url], endpoint);
        keep.push(fill);
        let remote: Vec<Duration> = (0..10)
            .map(|_| {
                let copy = crate::example_project();
                let wall = run(
                    &["extract", "--project", copy.path().to_str().expect("utf-8"), "--remote-cache", url],
                    endpoint,
                )
                .0;
                keep.push(copy);
                wall
            })
            .collect();
        let remote = median(remote);
        let per_hit = remote.saturating_sub(local) / 65;
        println!(
            "{:<52} {:>12}",
            format!("  cold local, warm remote ({name})"),
            format!(
                "{} ({:.2}x; {:.2}x the floor)",
                crate::fmt(remote),
                remote.as_secs_f64() / local.as_secs_f64(),
                remote.as_secs_f64() / written.as_secs_f64()
            )
        );
        println!("{:<52} {:>12}", format!("  per remote hit ({name})"), crate::fmt(per_hit));
    }
}

/// A project of `n` schemas, one entry, the trivial echo guest: `n` invocations.
pub fn generated(n: usize) -> tempfile::TempDir {
    let wasm = crate::target_dir().join("wasm32-wasip2/guest/qpf_hostile.wasm");
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("probes");
    std::fs::create_dir_all(&dir).expect("mkdir");
    for i in 0..n {
        std::fs::write(
            dir.join(format!("p{i:05}.yaml")),
            format!("apiVersion: qpf.dev/v1\nkind: Probe\nmetadata: {{name: p{i:05}, version: 1.0.0}}\nspec: {{greeting: hello {i}}}\n"),
        )
        .expect("schema");
    }
    std::fs::write(
        tmp.path().join("map.yaml"),
        "entries:\n  - {id: echo, plugin: hostile, input: /spec, out: \"{name}\", config: {mode: echo}}\n",
    )
    .expect("map");
    std::fs::write(tmp.path().join("probe.json"), "{\"type\": \"object\"}").expect("kind");
    let digest = format!("blake3:{}", blake3::hash(&std::fs::read(&wasm).expect("wasm")).to_hex());
    std::fs::write(
        tmp.path().join("qpf.yaml"),
        format!(
            "version: 1\nschemas: [\"probes/*.yaml\"]\nkinds: {{Probe: probe.json}}\nmap: map.yaml\noutput: out\nplugins:\n  hostile: {{path: {}, digest: {digest}}}\n",
            wasm.display()
        ),
    )
    .expect("qpf.yaml");
    tmp
}

/// Copies of a generated project, one per shard process (each its own local cache).
fn copies(project: &Path, n: usize) -> Vec<(tempfile::TempDir, PathBuf)> {
    (0..n)
        .map(|_| {
            let tmp = tempfile::tempdir().expect("temp dir");
            let status = std::process::Command::new("cp")
                .arg("-r")
                .arg(project)
                .arg(tmp.path().join("p"))
                .status()
                .expect("cp runs");
            assert!(status.success());
            let path = tmp.path().join("p");
            (tmp, path)
        })
        .collect()
}

/// 20,000 invocations over 1, 2 and 4 shard processes, then the gather.
pub fn shards(n: usize) {
    let s3 = S3s::start();
    let project = generated(n);
    println!("generated project: {n} invocations (trivial echo guest), remote: s3s in this process");
    // Every copy is kept until the end: deleting tens of thousands of files just before a
    // measurement makes ext4 slow to allocate inodes for a while (its "recently deleted" scan),
    // which would time the bench's own cleanup, not QPF.
    let mut keep: Vec<tempfile::TempDir> = Vec::new();
    for count in [1usize, 2, 4] {
        let url = format!("s3://cache/shards-{count}");
        let runs = copies(project.path(), count);
        let started = Instant::now();
        let handles: Vec<_> = runs
            .iter()
            .enumerate()
            .map(|(i, (_, path))| {
                let (path, url, endpoint) = (path.clone(), url.clone(), s3.endpoint.clone());
                std::thread::spawn(move || {
                    let shard = format!("{}/{count}", i + 1);
                    run(
                        &[
                            "extract",
                            "--project",
                            path.to_str().expect("utf-8"),
                            "--shard",
                            &shard,
                            "--remote-cache",
                            &url,
                        ],
                        &endpoint,
                    )
                })
            })
            .collect();
        let cpus: Vec<Duration> = handles.into_iter().map(|h| h.join().expect("shard thread").1).collect();
        let wall = started.elapsed();
        keep.extend(runs.into_iter().map(|(tmp, _)| tmp));
        println!(
            "{:<52} {:>12}",
            format!("  {count} shard process(es): wall"),
            format!(
                "{} (CPU per shard: {})",
                crate::fmt(wall),
                cpus.iter().map(|c| crate::fmt(*c)).collect::<Vec<_>>().join(", ")
            )
        );
        if count == 4 {
            let gathers: Vec<Duration> = (0..3)
                .map(|_| {
                    let (tmp, path) = copies(project.path(), 1).pop().expect("a copy");
                    let p = path.to_str().expect("utf-8").to_owned();
                    let wall = run(
                        &["extract", "--project", &p, "--require-hits", "--shards", "4", "--remote-cache", &url],
                        &s3.endpoint,
                    )
                    .0;
                    keep.push(tmp);
                    wall
                })
                .collect();
            println!("{:<52} {:>12}", "  gather from the warm remote (--require-hits)", crate::fmt(median(gathers)));
        }
    }
    // The same gather from a REAPI server, filled by one shard.
    let casd_dir = tempfile::tempdir().expect("temp dir");
    if let Some((child, url)) = casd(casd_dir.path()) {
        let (tmp, path) = copies(project.path(), 1).pop().expect("a copy");
        keep.push(tmp);
        let p = path.to_str().expect("utf-8").to_owned();
        let (fill, _) = run(&["extract", "--project", &p, "--shard", "1/1", "--remote-cache", &url], "");
        println!("{:<52} {:>12}", "  REAPI (buildbox-casd): 1 shard process, wall", crate::fmt(fill));
        let gathers: Vec<Duration> = (0..3)
            .map(|_| {
                let (tmp, path) = copies(project.path(), 1).pop().expect("a copy");
                let p = path.to_str().expect("utf-8").to_owned();
                let wall =
                    run(&["extract", "--project", &p, "--require-hits", "--shards", "1", "--remote-cache", &url], "").0;
                keep.push(tmp);
                wall
            })
            .collect();
        println!("{:<52} {:>12}", "  REAPI: gather from the warm remote", crate::fmt(median(gathers)));
        stop(child);
    }
}

/// The example project against each backend.
pub fn example_bench() {
    let folder = tempfile::tempdir().expect("temp dir");
    let s3 = S3s::start();
    let mut backends = vec![
        ("folder", url_of(folder.path()), String::new()),
        ("s3s, loopback", "s3://cache/example".to_owned(), s3.endpoint.clone()),
    ];
    let moto = moto();
    if let Some((_, endpoint)) = &moto {
        backends.push(("moto, loopback", "s3://cache/example".to_owned(), endpoint.clone()));
    }
    let casd_dir = tempfile::tempdir().expect("temp dir");
    let casd = casd(casd_dir.path());
    if let Some((_, url)) = &casd {
        backends.push(("REAPI: buildbox-casd, unix socket", url.clone(), String::new()));
    }
    example(&backends);
    for (child, _) in moto.into_iter().chain(casd) {
        stop(child);
    }
}

fn url_of(dir: &Path) -> String {
    format!("file://{}", dir.display())
}
