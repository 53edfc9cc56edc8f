//! A hostile extractor: each `config.mode` misbehaves in one way, so that a host test can prove the
//! sandbox contains it. `echo` behaves, and doubles as the trivial plugin of the benchmarks.
//!
//! `info()` misbehaves too, chosen by [`INFO_MODE`]: a marker in the component's data that a test
//! overwrites in a copy of the built `.wasm` (same length, so the component stays valid), which
//! gives one hostile `info()` per copy without one crate per behaviour.

use qpf_sdk::{Diagnostic, ExtractError, Extractor, PluginInfo, Request, Response, Severity};
use serde::Deserialize;

/// `QPF-HOSTILE-INFO:` then the mode, padded with spaces to 64 bytes. Tests patch it.
static INFO_MODE: [u8; 64] = *b"QPF-HOSTILE-INFO:normal                                         ";

fn info_mode() -> String {
    // `black_box`: the bytes must be read from the data segment, never folded at compile time.
    let bytes = std::hint::black_box(&INFO_MODE);
    String::from_utf8_lossy(&bytes[17..]).trim().to_owned()
}

/// A config schema whose 40 levels each refer twice to the next: 2^40 once expanded.
fn doubling_schema(levels: usize) -> serde_json::Value {
    let mut defs = serde_json::Map::new();
    for i in 0..levels {
        let next = format!("#/$defs/a{}", i + 1);
        defs.insert(format!("a{i}"), serde_json::json!({ "allOf": [{ "$ref": next }, { "$ref": next }] }));
    }
    defs.insert(format!("a{levels}"), serde_json::json!({ "type": "object" }));
    serde_json::json!({ "$ref": "#/$defs/a0", "$defs": defs })
}

#[derive(Deserialize)]
struct Config {
    mode: String,
    #[serde(default)]
    path: String,
    #[serde(default)]
    paths: Vec<String>,
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
        let normal = PluginInfo::new("hostile", env!("CARGO_PKG_VERSION"), "Misbehaves on purpose, for sandbox tests.");
        match info_mode().as_str() {
            "huge-version" => PluginInfo { version: "v".repeat(16 << 20), ..normal },
            "long-version" => PluginInfo { version: "v".repeat(1000), ..normal },
            "huge-name" => PluginInfo { name: "n".repeat(8 << 20), ..normal },
            "esc-name" => PluginInfo { name: "evil\x1b[2J\x1b]0;pwned\x07".to_owned(), ..normal },
            "bidi-description" => PluginInfo { description: "safe \u{202e}txt.exe".to_owned(), ..normal },
            "many-kinds" => PluginInfo { kinds: (0..1000).map(|i| format!("K{i}")).collect(), ..normal },
            "newline-kind" => PluginInfo { kinds: vec!["Agent\nok: forged".to_owned()], ..normal },
            "deep-schema" => normal.config_schema(doubling_schema(40)),
            "remote-ref" => normal.config_schema(serde_json::json!({ "$ref": "https://example.com/evil.json" })),
            "recursive-schema" => normal.config_schema(
                serde_json::json!({ "$defs": { "a": { "allOf": [{ "$ref": "#/$defs/a" }] } }, "$ref": "#/$defs/a" }),
            ),
            "bad-schema" => PluginInfo { config_schema: "{not json".to_owned(), ..normal },
            "backtracking-schema" => {
                normal.config_schema(serde_json::json!({ "properties": { "mode": { "pattern": "^(a+)+$" } } }))
            }
            "huge-schema" => {
                PluginInfo { config_schema: format!("{{\"description\":\"{}\"}}", "d".repeat(512 << 10)), ..normal }
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
            "trap" => panic!("hostile info() panics on purpose"),
            "exit" => std::process::exit(0),
            _ => normal,
        }
    }

    fn extract(request: Request) -> Result<Response, ExtractError> {
        let config: Config = request.config()?;
        match config.mode.as_str() {
            "echo" => Ok(Response::new().file("echo.json", request.input_json.clone())),
            // A generated file and a scaffold (at `path`, default `user.txt`), both of the input.
            "scaffold" => {
                let path = if config.path.is_empty() { "user.txt".to_owned() } else { config.path };
                Ok(Response::new()
                    .file("gen.txt", format!("generated from {}\n", request.input_json))
                    .scaffold(path, format!("# yours: written once from {}\n", request.input_json)))
            }
            "context" => Ok(Response::new().file("context.json", request.context_json.clone())),
            "spawn-self" => {
                let input: serde_json::Value = request.input()?;
                let config: serde_json::Value = request.config()?;
                Ok(Response::new().file("self.json", "{}").spawn("hostile", &input, &config))
            }
            "spawn" => {
                let mut response = Response::new()
                    .file(format!("{}.json", request.entry.replace(['>', '#', ':'], "_")), request.input_json.clone());
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
            "paths" => {
                let mut response = Response::new();
                for p in &config.paths {
                    response.push_file(p.clone(), "x\n");
                }
                Ok(response)
            }
            "exit" => std::process::exit(i32::try_from(config.bytes).unwrap_or(1)),
            "big-error" => {
                let mut message = String::from("\x1b[2J\x1b[31mforged\rqpf: 0 failed\n");
                message.push_str(&"e".repeat(config.bytes));
                Err(ExtractError::new(message))
            }
            "many-diagnostics" => {
                let mut response = Response::new().file("d.txt", "x");
                for i in 0..config.bytes {
                    response = response.diagnostic(Diagnostic::new(Severity::Warning, format!("w{i}")));
                }
                Ok(response)
            }
            "long-pointer" => Ok(Response::new()
                .file("p.txt", "x")
                .diagnostic(Diagnostic::new(Severity::Warning, "long").at(format!("/{}", "p".repeat(config.bytes))))),
            "log-flood" => {
                for _ in 0..config.bytes {
                    qpf_sdk::log::info("");
                }
                Ok(Response::new().file("flood.txt", "done\n"))
            }
            "log-huge" => {
                qpf_sdk::log::info(&"l".repeat(config.bytes));
                Ok(Response::new().file("huge-log.txt", "done\n"))
            }
            "log-escape" => {
                qpf_sdk::log::warn("\x1b[2J\x1b]0;pwned\x07forged line\n\rok");
                println!("\x1b[31mred stdout\u{202e}");
                Ok(Response::new().file("log-escape.txt", "done\n"))
            }
            "spawn-many" => {
                let mut response = Response::new().file("many.txt", "x");
                let echo = serde_json::json!({ "mode": "echo" });
                for i in 0..config.bytes {
                    response = response.spawn("hostile", &serde_json::json!({ "i": i }), &echo);
                }
                Ok(response)
            }
            "spawn-name" => {
                let name = "\x1b[2J".to_owned() + &"x".repeat(config.bytes);
                Ok(Response::new().file("name.txt", "x").spawn(&name, &serde_json::json!(null), &serde_json::json!({})))
            }
            "entry" => Ok(Response::new().file("entry.txt", format!("{}\n", request.entry))),
            "spawn-chain" => {
                let input: serde_json::Value = request.input()?;
                let n = input.get("n").and_then(serde_json::Value::as_u64).unwrap_or(0);
                let config: serde_json::Value = request.config()?;
                Ok(Response::new().file(format!("chain-{n}.txt"), "x").spawn(
                    "hostile",
                    &serde_json::json!({ "n": n + 1 }),
                    &config,
                ))
            }
            "random" => {
                let state = std::collections::hash_map::RandomState::new();
                let hash = std::hash::BuildHasher::hash_one(&state, 42u32);
                Ok(Response::new().file("random.txt", format!("{hash}\n")))
            }
            "recurse" => Ok(Response::new().file("r.txt", format!("{}", recurse(config.bytes as u64)))),
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
            "plant" => {
                plant(&config.path);
                Ok(Response::new().file("planted.txt", "planted\n"))
            }
            "scan" => {
                // `bytes: 1` plants first: the control that shows the scan finds what is there.
                if config.bytes == 1 {
                    plant(&config.path);
                }
                let found = memory::scan(&config.path);
                Ok(Response::new().file("scan.txt", if found { "found\n" } else { "clean\n" }))
            }
            other => Err(ExtractError::new(format!("unknown mode `{other}`"))),
        }
    }
}

/// Writes `secret` (each byte XOR 0x5A, so the pattern is never in a request or the data segment)
/// 64 Ki times into a buffer that is leaked: it stays in linear memory after the call.
fn plant(secret: &str) {
    let pattern: Vec<u8> = secret.bytes().map(|b| b ^ 0x5A).collect();
    let mut buf = Vec::with_capacity(pattern.len() * 65_536);
    for _ in 0..65_536 {
        buf.extend_from_slice(&pattern);
    }
    std::mem::forget(std::hint::black_box(buf));
}

/// Reading the instance's whole linear memory needs raw pointers: the point of this guest.
#[allow(unsafe_code)]
mod memory {
    /// Whether linear memory anywhere holds `secret` XOR 0x5A, compared byte by byte (the pattern
    /// is never materialised, so the scanner's own memory cannot match itself).
    pub fn scan(secret: &str) -> bool {
        let want = secret.as_bytes();
        if want.is_empty() {
            return false;
        }
        #[cfg(target_arch = "wasm32")]
        let end = core::arch::wasm32::memory_size::<0>() * 65_536;
        #[cfg(not(target_arch = "wasm32"))]
        let end = 0usize;
        let at = |i: usize| -> u8 {
            // SAFETY: every address below the memory size is readable in wasm linear memory;
            // volatile, so the reads are not optimised away.
            unsafe { core::ptr::read_volatile(i as *const u8) }
        };
        (1..end.saturating_sub(want.len())).any(|i| want.iter().enumerate().all(|(j, w)| at(i + j) == w ^ 0x5A))
    }
}

/// Recursion without a bound the optimiser can see: overflows the guest's stack.
fn recurse(n: u64) -> u64 {
    if n == 0 { 0 } else { std::hint::black_box(recurse(std::hint::black_box(n - 1)) + 1) }
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
