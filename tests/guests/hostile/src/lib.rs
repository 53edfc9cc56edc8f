//! A hostile extractor: each `config.mode` misbehaves in one way, so that a host test can prove the
//! sandbox contains it. `echo` behaves, and doubles as the trivial plugin of the benchmarks.

use qpf_sdk::{Diagnostic, ExtractError, Extractor, PluginInfo, Request, Response, Severity};
use serde::Deserialize;

#[derive(Deserialize)]
struct Config {
    mode: String,
    #[serde(default)]
    path: String,
    #[serde(default)]
    bytes: usize,
    #[serde(default)]
    spawn: Vec<SpawnSpec>,
}

#[derive(Deserialize)]
struct SpawnSpec {
    plugin: String,
    input: serde_json::Value,
    config: serde_json::Value,
}

struct Hostile;

impl Extractor for Hostile {
    fn info() -> PluginInfo {
        PluginInfo::new("hostile", env!("CARGO_PKG_VERSION"), "Misbehaves on purpose, for sandbox tests.")
    }

    fn extract(request: Request) -> Result<Response, ExtractError> {
        let config: Config = request.config()?;
        match config.mode.as_str() {
            "echo" => Ok(Response::new().file("echo.json", request.input_json.clone())),
            "context" => Ok(Response::new().file("context.json", request.context_json.clone())),
            "spawn-self" => {
                let input: serde_json::Value = request.input()?;
                let config: serde_json::Value = request.config()?;
                Ok(Response::new().file("self.json", "{}").spawn("hostile", &input, &config))
            }
            "spawn" => {
                let mut response = Response::new()
                    .file(format!("{}.json", request.entry.replace(['>', '#'], "_")), request.input_json.clone());
                for s in &config.spawn {
                    response = response.spawn(&s.plugin, &s.input, &s.config);
                }
                Ok(response)
            }
            "loop" => {
                let mut x: u64 = 1;
                loop {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            }
            "grow" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 16 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "big-file" => Ok(Response::new().file("big.bin", vec![b'x'; config.bytes])),
            "many-files" => {
                let mut response = Response::new();
                for i in 0..config.bytes {
                    response.push_file(format!("f{i}.txt"), "x");
                }
                Ok(response)
            }
            "path" => Ok(Response::new().file(config.path, "escaped\n")),
            "duplicate" => Ok(Response::new().file("same.txt", "a").file("same.txt", "b")),
            "trap" => panic!("hostile guest panics on purpose"),
            "error" => Err(ExtractError::new("the input has no `types`")
                .with(Diagnostic::new(Severity::Error, "expected a list").at("/types"))),
            "noisy" => {
                for i in 0..100_000 {
                    println!("stdout line {i} from a noisy guest");
                    eprintln!("stderr line {i} from a noisy guest");
                    qpf_sdk::log::info("log line from a noisy guest");
                }
                Ok(Response::new().file("noisy.txt", "done\n"))
            }
            "probe" => Ok(Response::new().file("probe.json", probe().to_string())),
            other => Err(ExtractError::new(format!("unknown mode `{other}`"))),
        }
    }
}

/// Tries every ambient authority a guest could reach for and reports what it got.
fn probe() -> serde_json::Value {
    let file = std::fs::read("/etc/passwd").map(|b| b.len()).map_err(|e| e.kind().to_string());
    let dir = std::fs::read_dir(".").map(|d| d.count()).map_err(|e| e.kind().to_string());
    let write = std::fs::write("escape.txt", "x").map_err(|e| e.kind().to_string());
    let env: Vec<(String, String)> = std::env::vars().collect();
    let args: Vec<String> = std::env::args().collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos().to_string())
        .unwrap_or_else(|_| "before epoch".to_owned());
    let mut random = std::collections::hash_map::RandomState::new();
    let _ = &mut random;
    let tcp = std::net::TcpStream::connect("127.0.0.1:80").map(|_| ()).map_err(|e| e.kind().to_string());
    serde_json::json!({
        "file": format!("{file:?}"),
        "dir": format!("{dir:?}"),
        "write": format!("{write:?}"),
        "env": env,
        "args": args,
        "now_nanos": now,
        "random_hash": format!("{:?}", std::hash::BuildHasher::hash_one(&random, 42u32)),
        "tcp": format!("{tcp:?}"),
    })
}

qpf_sdk::export!(Hostile);
