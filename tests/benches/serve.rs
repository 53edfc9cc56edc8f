//! `qpf serve` under load, driven by `wrk` (Debian's package; `./dev bench` installs it): requests
//! per second and p50/p99 of `/v1/invoke` for cache hits and for misses of a trivial plugin, and
//! the noisy-neighbour ratio: tenant B's p99 while tenant A floods with plugins that burn their
//! whole fuel, over B's p99 alone.

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};

struct Server {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn digest(token: &str) -> String {
    format!("blake3:{}", blake3::hash(token.as_bytes()).to_hex())
}

fn start(qpf: &Path) -> Server {
    // `QPF_BENCH_SERVE_DIR` puts the service's state elsewhere (e.g. on tmpfs, to separate the
    // service's own cost from the file system's).
    let dir = match std::env::var_os("QPF_BENCH_SERVE_DIR") {
        Some(base) => tempfile::tempdir_in(base).expect("temp dir"),
        None => tempfile::tempdir().expect("temp dir"),
    };
    // Tenant A's plugins burn 50 M fuel (a few milliseconds) each; quotas high enough not to interfere.
    let quotas = "    quotas: { concurrent: 8, requests-per-minute: 100000000, fuel-per-minute: 100000000000000 }\n";
    let config = format!(
        "listen: 127.0.0.1:0\ndata: state\ntenants:\n  - id: a\n    tokens: [{}]\n    limits: {{ fuel: 50000000 }}\n{quotas}  - id: b\n    tokens: [{}]\n{quotas}",
        digest("token-a"),
        digest("token-b")
    );
    std::fs::write(dir.path().join("serve.yaml"), config).expect("config");
    let mut child = Command::new(qpf)
        .args(["serve", "--config"])
        .arg(dir.path().join("serve.yaml"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("qpf serve");
    let mut first = String::new();
    let _ = std::io::BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut first);
    let Some(base) = first.trim().strip_prefix("listening on ").map(str::to_owned) else {
        let _ = child.kill();
        panic!("qpf serve did not start ({:?}); its stderr is above", child.wait());
    };
    Server { child, base, _dir: dir }
}

fn upload(base: &str, token: &str, wasm: &[u8]) {
    let status = ureq::post(format!("{base}/v1/plugins"))
        .header("Authorization", format!("Bearer {token}"))
        .header("Content-Type", "application/wasm")
        .send(wasm)
        .map(|r| r.status().as_u16());
    assert!(matches!(status, Ok(201)), "upload: {status:?}");
}

/// A wrk script posting an invocation; `unique` makes every request a different input (a miss),
/// different from every other script's too.
fn script(dir: &Path, name: &str, token: &str, plugin: &str, mode: &str, unique: bool) -> std::path::PathBuf {
    static SCRIPTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let series = SCRIPTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) * 100_000_000_000;
    let input = if unique { "{\\\"n\\\":%d}" } else { "{\\\"n\\\":1}" };
    let body = format!(
        "{{\\\"plugin\\\":\\\"{plugin}\\\",\\\"input\\\":{input},\\\"config\\\":{{\\\"mode\\\":\\\"{mode}\\\"}},\\\"schema\\\":{{\\\"kind\\\":\\\"Probe\\\",\\\"name\\\":\\\"p\\\",\\\"version\\\":\\\"1.0.0\\\"}}}}"
    );
    let lua = format!(
        r#"local counter = 0
local id = 0
local threads = 0
function setup(thread) threads = threads + 1; thread:set("id", threads) end
function init(args) id = tonumber(wrk.thread:get("id")) or 0 end
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer {token}"
wrk.headers["Content-Type"] = "application/json"
function request()
  counter = counter + 1
  return wrk.format(nil, "/v1/invoke", nil, string.format("{body}", {series} + id * 1000000000 + counter))
end
function done(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %d %d\n", summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), summary.errors.status))
end
"#
    );
    let path = dir.join(format!("{name}.lua"));
    std::fs::write(&path, lua).expect("script");
    path
}

/// (requests/s, p50 µs, p99 µs, non-2xx) of one wrk run.
fn wrk(base: &str, script: &Path, threads: u32, connections: u32, seconds: u32) -> (f64, u64, u64, u64) {
    let out = Command::new("wrk")
        .args(["-t", &threads.to_string(), "-c", &connections.to_string(), "-d", &format!("{seconds}s"), "-s"])
        .arg(script)
        .arg(base)
        .output()
        .expect("wrk runs (./dev bench installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with("RESULT")).unwrap_or_else(|| panic!("wrk: {text}"));
    let n: Vec<u64> = line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    (n[0] as f64 / (n[1] as f64 / 1e6), n[2], n[3], n[4])
}

/// Prints the serve benchmark.
pub fn run(qpf: &Path, hostile: &Path) {
    if Command::new("wrk").arg("--version").output().is_err() {
        println!("serve: skipped (no `wrk`; ./dev bench installs it)");
        return;
    }
    let server = start(qpf);
    let wasm = std::fs::read(hostile).expect("hostile guest");
    let plugin = format!("blake3:{}", blake3::hash(&wasm).to_hex());
    upload(&server.base, "token-a", &wasm);
    upload(&server.base, "token-b", &wasm);
    let dir = tempfile::tempdir().expect("scripts");
    let hits = script(dir.path(), "hits", "token-b", &plugin, "echo", false);
    let misses = script(dir.path(), "misses", "token-b", &plugin, "echo", true);
    let flood = script(dir.path(), "flood", "token-a", &plugin, "loop", true);
    // B's misses alone and with A flooding: two scripts, so the second does not replay the first's
    // inputs (they would be cache hits).
    let light = script(dir.path(), "light", "token-b", &plugin, "echo", true);
    let light_noisy = script(dir.path(), "light-noisy", "token-b", &plugin, "echo", true);

    let _ = wrk(&server.base, &hits, 1, 4, 1); // warm-up: compile, first miss
    let (rps, p50, p99, bad) = wrk(&server.base, &hits, 2, 32, 5);
    println!(
        "{:<52} {:>9.0}/s  p50 {p50} µs  p99 {p99} µs  non-2xx {bad}",
        "serve: /v1/invoke cache hits (2 threads, 32 conns)", rps
    );
    let (rps, p50, p99, bad) = wrk(&server.base, &misses, 2, 32, 5);
    println!(
        "{:<52} {:>9.0}/s  p50 {p50} µs  p99 {p99} µs  non-2xx {bad}",
        "serve: /v1/invoke misses (2 threads, 32 conns)", rps
    );

    let (_, _, alone, _) = wrk(&server.base, &light, 1, 2, 5);
    let flooding = std::thread::spawn({
        let (base, flood) = (server.base.clone(), flood.clone());
        move || wrk(&base, &flood, 1, 64, 7)
    });
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (_, _, noisy, _) = wrk(&server.base, &light_noisy, 1, 2, 5);
    let (a_rps, _, _, a_bad) = flooding.join().expect("flood");
    println!(
        "{:<52} {:>9.2}   B p99 alone {alone} µs, with A flooding {noisy} µs (A: {a_rps:.0}/s, {a_bad} non-2xx)",
        "serve: noisy-neighbour p99 ratio",
        noisy as f64 / alone.max(1) as f64
    );
}
