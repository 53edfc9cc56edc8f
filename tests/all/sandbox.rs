//! Hostile guests against the runtime: each test names the behaviour it proves. The guest is
//! `tests/guests/hostile`; its `config.mode` picks the misbehaviour.

use qpf_runtime::{Limits, LogLevel, Plugin, Request, Runtime, RuntimeOptions, SandboxError, SchemaId, Seed};

use crate::support;

fn runtime() -> Runtime {
    Runtime::new(&RuntimeOptions::default()).expect("runtime")
}

fn hostile(rt: &Runtime) -> Plugin {
    let path = support::wasm("qpf_hostile");
    rt.load(&path, Some(&support::digest(&path)), &Limits::default()).expect("hostile guest loads")
}

fn request(config: serde_json::Value) -> Request {
    Request {
        entry: "e".into(),
        schema: SchemaId { kind: "Probe".into(), name: "probe".into(), version: "1.0.0".into() },
        input: "{\"greeting\":\"hello\"}".into(),
        config: config.to_string(),
        context: "{}".into(),
    }
}

fn run(config: serde_json::Value, limits: &Limits) -> Result<qpf_runtime::Invocation, SandboxError> {
    let rt = runtime();
    let plugin = hostile(&rt);
    rt.invoke(&plugin, &request(config), limits, &Seed::from_key("test"))
}

#[test]
fn endless_loop_is_stopped_by_the_fuel_limit() {
    let limits = Limits { fuel: 100_000_000, ..Limits::default() };
    let err = run(serde_json::json!({"mode": "loop"}), &limits).unwrap_err();
    assert_eq!(err, SandboxError::OutOfFuel { limit: 100_000_000 });
    assert!(err.to_string().contains("limits.fuel"), "{err}");
}

#[test]
fn endless_loop_with_unlimited_fuel_is_stopped_by_the_deadline() {
    let limits = Limits { fuel: u64::MAX / 2, deadline_ms: 200, ..Limits::default() };
    let err = run(serde_json::json!({"mode": "loop"}), &limits).unwrap_err();
    assert_eq!(err, SandboxError::Deadline { limit_ms: 200 });
}

#[test]
fn a_yielding_runtime_keeps_the_deadline_and_changes_no_result() {
    // `yield_every` (what `qpf serve` uses): the deadline is then kept by the clock at each yield.
    let rt = Runtime::new(&RuntimeOptions {
        yield_every: Some(std::time::Duration::from_millis(1)),
        ..RuntimeOptions::default()
    })
    .expect("runtime");
    let plugin = hostile(&rt);
    let limits = Limits { fuel: u64::MAX / 2, deadline_ms: 200, ..Limits::default() };
    let err = rt.invoke(&plugin, &request(serde_json::json!({"mode": "loop"})), &limits, &Seed::from_key("t"));
    assert_eq!(err.unwrap_err(), SandboxError::Deadline { limit_ms: 200 });
    // Fuel runs out the same way, with the same count, and a normal answer is byte-identical.
    let limits = Limits { fuel: 100_000_000, ..Limits::default() };
    let err = rt.invoke(&plugin, &request(serde_json::json!({"mode": "loop"})), &limits, &Seed::from_key("t"));
    assert_eq!(err.unwrap_err(), SandboxError::OutOfFuel { limit: 100_000_000 });
    let echo = request(serde_json::json!({"mode": "echo"}));
    let yielding = rt.invoke(&plugin, &echo, &Limits::default(), &Seed::from_key("t")).expect("runs");
    let plain = runtime();
    let plain_plugin = hostile(&plain);
    let reference = plain.invoke(&plain_plugin, &echo, &Limits::default(), &Seed::from_key("t")).expect("runs");
    assert_eq!(format!("{:?}", yielding.result), format!("{:?}", reference.result));
    assert_eq!(yielding.fuel_consumed, reference.fuel_consumed);
}

#[test]
fn growing_memory_hits_the_memory_limit() {
    let limits = Limits { memory_bytes: 64 << 20, ..Limits::default() };
    match run(serde_json::json!({"mode": "grow"}), &limits).unwrap_err() {
        SandboxError::Memory { limit, requested } => {
            assert_eq!(limit, 64 << 20);
            assert!(requested > limit);
        }
        other => panic!("expected a memory-limit error, got {other:?}"),
    }
}

#[test]
fn a_100_mb_file_hits_the_output_limit_before_the_host_copies_it() {
    let limits = Limits::default();
    let err = run(serde_json::json!({"mode": "big-file", "bytes": 100_000_000}), &limits).unwrap_err();
    assert_eq!(err, SandboxError::OutputTooLarge { limit: limits.max_output_bytes });
    assert!(err.to_string().contains("limits.max-output-bytes"), "{err}");
}

#[test]
fn a_trap_is_reported_as_a_crash_with_a_backtrace() {
    let err = run(serde_json::json!({"mode": "trap"}), &Limits::default()).unwrap_err();
    match &err {
        SandboxError::Trap { message } => {
            assert!(message.contains("unreachable") || message.contains("wasm"), "{message}")
        }
        other => panic!("expected a trap, got {other:?}"),
    }
}

#[test]
fn a_rust_panic_is_reported_with_its_message_and_location_first() {
    // The SDK's panic hook logs the message and location; the host puts them at the head of the
    // crash report (a panic aborts: it is a trap, not an `extract-error`).
    let err = run(serde_json::json!({"mode": "trap"}), &Limits::default()).unwrap_err();
    let SandboxError::Trap { message } = &err else { panic!("expected a trap, got {err:?}") };
    let first = message.lines().next().unwrap_or_default();
    assert!(first.starts_with("panicked at "), "{message}");
    assert!(first.contains("src/lib.rs:"), "the location: {message}");
    assert!(first.ends_with("hostile guest panics on purpose"), "the message: {message}");
}

#[test]
fn a_plugin_error_is_not_a_trap() {
    let inv = run(serde_json::json!({"mode": "error"}), &Limits::default()).expect("the call itself succeeds");
    let err = inv.result.expect_err("the plugin says no");
    assert_eq!(err.message, "the input has no `types`");
    assert_eq!(err.diagnostics[0].pointer.as_deref(), Some("/types"));
}

#[test]
fn the_runtime_survives_a_trap_and_runs_the_next_invocation() {
    let rt = runtime();
    let plugin = hostile(&rt);
    assert!(
        rt.invoke(&plugin, &request(serde_json::json!({"mode": "trap"})), &Limits::default(), &Seed::from_key("test"))
            .is_err()
    );
    let ok = rt
        .invoke(&plugin, &request(serde_json::json!({"mode": "echo"})), &Limits::default(), &Seed::from_key("test"))
        .expect("runs");
    let files = ok.result.expect("echo succeeds").files;
    assert_eq!(files[0].contents, b"{\"greeting\":\"hello\"}");
}

#[test]
fn a_guest_sees_no_files_no_env_no_args_no_network_a_frozen_clock_and_seeded_randomness() {
    let rt = runtime();
    let plugin = hostile(&rt);
    let probe = |rt: &Runtime| {
        let inv = rt
            .invoke(
                &plugin,
                &request(serde_json::json!({"mode": "probe"})),
                &Limits::default(),
                &Seed::from_key("test"),
            )
            .expect("runs");
        let files = inv.result.expect("probe succeeds").files;
        serde_json::from_slice::<serde_json::Value>(&files[0].contents).expect("probe writes JSON")
    };
    let seen = probe(&rt);
    assert!(seen["file"].as_str().unwrap().starts_with("Err"), "reading /etc/passwd must fail: {seen}");
    assert!(seen["dir"].as_str().unwrap().starts_with("Err"), "listing `.` must fail: {seen}");
    assert!(seen["write"].as_str().unwrap().starts_with("Err"), "writing a file must fail: {seen}");
    assert_eq!(seen["env"], serde_json::json!([]), "no environment variables");
    assert_eq!(seen["args"], serde_json::json!([]), "no arguments");
    assert_eq!(seen["now_nanos"], "0", "the wall clock is frozen at the epoch");
    assert!(seen["tcp"].as_str().unwrap().starts_with("Err"), "no network: {seen}");
    assert_eq!(probe(&rt), seen, "randomness is seeded, so a second run sees exactly the same");
}

#[test]
fn a_noisy_guest_is_bounded_and_still_succeeds() {
    let limits = Limits { max_log_bytes: 4096, ..Limits::default() };
    let inv = run(serde_json::json!({"mode": "noisy"}), &limits).expect("runs");
    assert!(inv.result.is_ok(), "printing too much must not crash the plugin");
    let kept: usize = inv.logs.iter().filter(|l| !l.message.contains("dropped")).map(|l| l.message.len()).sum();
    assert!(kept <= 3 * 4096, "kept {kept} bytes of log");
    assert!(inv.logs.iter().any(|l| l.level == LogLevel::Stdout && l.message.contains("dropped")));
}

#[test]
fn fuel_consumed_is_deterministic() {
    let rt = runtime();
    let plugin = hostile(&rt);
    let fuel = |rt: &Runtime| {
        rt.invoke(&plugin, &request(serde_json::json!({"mode": "echo"})), &Limits::default(), &Seed::from_key("test"))
            .expect("runs")
            .fuel_consumed
    };
    let first = fuel(&rt);
    assert!(first > 0);
    assert_eq!(fuel(&rt), first);
}

#[test]
fn a_digest_mismatch_refuses_to_load() {
    let rt = runtime();
    let path = support::wasm("qpf_hostile");
    let wrong = format!("blake3:{}", "0".repeat(64));
    let err = rt.load(&path, Some(&wrong), &Limits::default()).unwrap_err().to_string();
    assert!(err.contains(&wrong) && err.contains(&support::digest(&path)), "{err}");
}

#[test]
fn a_file_that_is_not_a_component_is_refused_with_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("junk.wasm");
    std::fs::write(&path, b"\0asm not really").unwrap();
    let err = runtime().load(&path, None, &Limits::default()).unwrap_err().to_string();
    assert!(err.contains("junk.wasm") && err.contains("not a valid WebAssembly component"), "{err}");
}

#[test]
fn info_is_read_from_the_plugin() {
    let rt = runtime();
    let plugin = hostile(&rt);
    assert_eq!(plugin.info().name, "hostile");
    assert_eq!(plugin.info().version, env!("CARGO_PKG_VERSION"));
    assert_eq!(plugin.abi(), "0.2.0", "the test guests are built with the SDK of the newest contract");
}

#[test]
fn a_pinned_plugin_with_an_authenticated_artifact_is_loaded_without_reading_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let rt = Runtime::new(&RuntimeOptions {
        compiled_cache: Some(qpf_runtime::CompiledCacheOptions::new(dir.path().join("compiled"), [9; 32])),
        ..RuntimeOptions::default()
    })
    .expect("runtime");
    let wasm = dir.path().join("plugin.wasm");
    std::fs::copy(support::wasm("qpf_hostile"), &wasm).unwrap();
    let pin = support::digest(&wasm);
    let first = rt.load(&wasm, Some(&pin), &Limits::default()).expect("compiles and caches");
    // The file now holds other bytes: the pin's artifact is what runs, not the file.
    std::fs::write(&wasm, b"not a component").unwrap();
    let again = rt.load(&wasm, Some(&pin), &Limits::default()).expect("the pinned artifact");
    assert_eq!(again.digest(), first.digest());
    let echo = request(serde_json::json!({"mode": "echo"}));
    assert!(rt.invoke(&again, &echo, &Limits::default(), &Seed::from_key("t")).expect("runs").result.is_ok());
    // Without a pin, or with a pin that has no artifact, the file is read and checked.
    assert!(matches!(rt.load(&wasm, None, &Limits::default()), Err(qpf_runtime::LoadError::Compile { .. })));
    let other = format!("blake3:{}", "0".repeat(64));
    assert!(matches!(
        rt.load(&wasm, Some(&other), &Limits::default()),
        Err(qpf_runtime::LoadError::DigestMismatch { .. })
    ));
}
