//! The adversarial corpus: hostile plugins and hostile projects against the `qpf` binary, one row
//! per attack. Every row must end in a clear, bounded message (naming the limit, the entry or the
//! path), and every row is also checked for what must never happen: a panic or abort, a file
//! written outside the output root, raw control or bidi characters on the terminal, an error
//! message that grows with what the attacker sent.
//!
//! Hostile `info()`s come from copies of the hostile guest whose `INFO_MODE` marker is patched
//! (see `tests/guests/hostile`).

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::support::{self, show};

/// Largest stderr a failing run may print, whatever the plugin sent.
const MAX_STDERR: usize = 64 << 10;

/// A copy of the hostile guest whose `info()` behaves as `mode`.
fn patched_guest(dir: &Path, mode: &str) -> PathBuf {
    let mut bytes = std::fs::read(support::wasm("qpf_hostile")).unwrap();
    let marker = b"QPF-HOSTILE-INFO:normal";
    let at = bytes.windows(marker.len()).position(|w| w == marker).expect("the guest carries its info marker");
    let mut patch = format!("QPF-HOSTILE-INFO:{mode}").into_bytes();
    assert!(patch.len() <= 64, "mode too long");
    patch.resize(64, b' ');
    bytes[at..at + 64].copy_from_slice(&patch);
    let path = dir.join(format!("hostile-{mode}.wasm"));
    std::fs::write(&path, bytes).unwrap();
    path
}

/// A hostile project: one Probe schema, the given plugin (the hostile guest unless `wasm` is
/// given), one entry per `(id, config, extra map lines)`, and extra `qpf.yaml` text.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(entries: &[(&str, Value, &str)], qpf_extra: &str) -> Setup {
        Setup::with_plugin(None, entries, qpf_extra)
    }

    fn with_plugin(wasm: Option<&Path>, entries: &[(&str, Value, &str)], qpf_extra: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::create_dir_all(p.join("schemas")).unwrap();
        std::fs::write(
            p.join("schemas/probe.yaml"),
            "apiVersion: qpf.dev/v1\nkind: Probe\nmetadata:\n  name: probe\n  version: 1.0.0\nspec:\n  greeting: hello\n",
        )
        .unwrap();
        let mut map = String::from("entries:\n");
        for (id, config, extra) in entries {
            map.push_str(&format!(
                "  - id: {id}\n    plugin: hostile\n    input: /spec\n    out: {id}\n    config: {}\n{extra}",
                ascii_json(config)
            ));
        }
        std::fs::write(p.join("map.yaml"), map).unwrap();
        std::fs::write(p.join("probe.schema.json"), support::PROBE_KIND).unwrap();
        let wasm = wasm.map(Path::to_owned).unwrap_or_else(|| support::wasm("qpf_hostile"));
        let digest = if wasm.is_file() { support::digest(&wasm) } else { format!("blake3:{}", "0".repeat(64)) };
        let text = format!(
            "version: 1\nschemas: [\"schemas/*.yaml\"]\nkinds: {{Probe: probe.schema.json}}\nmap: map.yaml\nplugins:\n  hostile:\n    path: {}\n    digest: {digest}\n{qpf_extra}",
            wasm.display()
        );
        let text = if qpf_extra.contains("output:") { text } else { format!("{text}\noutput: out\n") };
        std::fs::write(p.join("qpf.yaml"), text).unwrap();
        Setup { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `qpf <args> --project <dir>`, with a report, and checks what must never happen.
    fn run(&self, args: &[&str]) -> Run {
        self.run_env(args, &[])
    }

    fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let p = self.path();
        let before = outside_files(p);
        let report = p.join("report.json");
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--project", p.to_str().unwrap()]);
        if args.first() == Some(&"extract") {
            all.extend(["--report", report.to_str().unwrap()]);
        }
        let mut cmd = std::process::Command::new(support::qpf_bin());
        cmd.args(&all).env("QPF_LOG", "warn");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let shown = show(&out);
        let code = out.status.code();
        assert!(code.is_some(), "qpf was killed by a signal (abort?): {shown}");
        // A panic of qpf itself ("thread 'main' panicked at"), not a plugin's, which qpf reports.
        let host_panic = stderr.contains("thread '") && stderr.contains("panicked at");
        assert!(!host_panic && !stderr.contains("RUST_BACKTRACE"), "qpf panicked: {shown}");
        for text in [&stdout, &stderr] {
            assert!(
                !text.chars().any(|c| qpf_core_unsafe(c) && c != '\n' && c != '\t'),
                "raw control or format characters reached the terminal: {:?}",
                text
            );
        }
        assert!(stderr.len() <= MAX_STDERR, "stderr is {} bytes: the message grew with the attack", stderr.len());
        assert_eq!(outside_files(p), before, "files appeared outside the output root and the state folder");
        let report = std::fs::read(&report).ok().and_then(|b| serde_json::from_slice(&b).ok());
        Run { code, stderr, stdout, report }
    }
}

/// JSON with every non-ASCII character (and DEL) written as a UTF-16 `\\u` escape of four hex
/// digits: YAML refuses some of them raw (C1 controls, DEL) but reads the escapes.
fn ascii_json(value: &Value) -> String {
    let mut out = String::new();
    for c in value.to_string().chars() {
        if c.is_ascii() && c != '\u{7f}' {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{:04x}", u));
            }
        }
    }
    out
}

/// The same rule as `qpf_core::text::is_unsafe_char`, restated here so the test does not trust the
/// code it checks: controls and the format characters an attacker would reach for.
fn qpf_core_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// Files under the project that are neither outputs, state, nor the report.
fn outside_files(p: &Path) -> Vec<PathBuf> {
    support::walk(p)
        .into_iter()
        .map(|f| f.strip_prefix(p).unwrap().to_owned())
        .filter(|r| {
            !r.starts_with("out")
                && !r.starts_with(".qpf")
                && r != Path::new("qpf.lock")
                && r != Path::new("report.json")
        })
        .collect()
}

struct Run {
    code: Option<i32>,
    stderr: String,
    #[allow(dead_code)]
    stdout: String,
    report: Option<Value>,
}

impl Run {
    fn fails_with(&self, code: i32, needles: &[&str]) -> &Self {
        assert_eq!(self.code, Some(code), "exit code; stderr:\n{}", self.stderr);
        for n in needles {
            assert!(self.stderr.contains(n), "stderr lacks `{n}`:\n{}", self.stderr);
        }
        self
    }

    fn succeeds(&self) -> &Self {
        assert_eq!(self.code, Some(0), "stderr:\n{}", self.stderr);
        self
    }

    fn invocations(&self) -> Vec<Value> {
        self.report.as_ref().and_then(|r| r["invocations"].as_array().cloned()).unwrap_or_default()
    }
}

fn one(config: Value) -> Setup {
    Setup::new(&[("x", config, "")], "")
}

// ---- 1. Output paths: refused before anything is written, with the character or rule named.

#[test]
fn output_paths_with_control_bidi_or_odd_forms_are_refused_by_name() {
    let cases: &[(&str, &str)] = &[
        ("a\nb.txt", "U+000A"),
        ("\u{1b}[2Jx.txt", "U+001B"),
        ("a\rb.txt", "U+000D"),
        ("evil\u{202e}txt.py", "U+202E"),
        ("a\u{200b}b.txt", "U+200B"),
        ("a\u{9b}b.txt", "U+009B"),
        ("a\u{2066}b.txt", "U+2066"),
        ("a\u{feff}b.txt", "U+FEFF"),
        ("a\u{7f}b.txt", "U+007F"),
        ("a\\b.txt", "`\\`"),
        ("C:x.txt", "drive"),
        ("a\0b", "NUL"),
        ("", "empty"),
        ("a//b", "segment"),
        ("./a", "`.` segment"),
        ("../x", "`..` segment"),
        ("a/../../x", "`..` segment"),
        ("/etc/x", "absolute"),
        ("a/", "segment"),
    ];
    for (path, needle) in cases {
        let setup = one(json!({ "mode": "path", "path": path }));
        let run = setup.run(&["extract"]);
        run.fails_with(1, &["not allowed", needle, "entry `x`"]);
        assert!(support::walk(&setup.path().join("out")).is_empty(), "{path:?}: nothing written");
    }
}

#[test]
fn a_segment_longer_than_file_systems_allow_is_refused_and_a_legal_long_name_is_written() {
    let long = "n".repeat(256);
    Setup::new(&[("x", json!({ "mode": "path", "path": long }), "")], "limits:\n  max-path-len: 4096\n")
        .run(&["extract"])
        .fails_with(1, &["over the limit of 255 bytes per file"]);
    let legal = "n".repeat(250);
    let setup = Setup::new(&[("x", json!({ "mode": "path", "path": legal }), "")], "limits:\n  max-path-len: 4096\n");
    setup.run(&["extract"]).succeeds();
    assert!(setup.path().join("out/x").join(&legal).is_file());
}

#[test]
fn files_that_cannot_coexist_fail_the_invocation_before_anything_is_written() {
    for (paths, needle) in [
        (json!(["a", "a/b"]), "needs it to be a folder"),
        (json!(["x/a/b", "x/a"]), "needs it to be a folder"),
        (json!(["README.md", "readme.md"]), "differ only in case"),
        (json!(["same", "same"]), "twice"),
    ] {
        let setup = one(json!({ "mode": "paths", "paths": paths }));
        setup.run(&["extract"]).fails_with(1, &[needle]);
        assert!(support::walk(&setup.path().join("out")).is_empty(), "{paths}: nothing written");
    }
}

#[test]
fn a_file_on_disk_where_a_folder_is_needed_fails_before_writing() {
    let setup = one(json!({ "mode": "paths", "paths": ["first.txt", "a/b"] }));
    std::fs::create_dir_all(setup.path().join("out/x")).unwrap();
    std::fs::write(setup.path().join("out/x/a"), "user's file").unwrap();
    setup.run(&["extract"]).fails_with(1, &["needs it to be a folder"]);
    assert!(!setup.path().join("out/x/first.txt").exists(), "the invocation wrote nothing");
    assert_eq!(std::fs::read_to_string(setup.path().join("out/x/a")).unwrap(), "user's file");
}

// ---- 2. Exits, traps, messages, diagnostics, logs: bounded and named.

#[test]
fn exit_inside_extract_says_exit_not_instantiate() {
    one(json!({ "mode": "exit", "bytes": 0 })).run(&["extract"]).fails_with(1, &["called `exit(0)`"]);
    // WASI p2's `exit` carries only success or failure: any other code arrives as 1.
    one(json!({ "mode": "exit", "bytes": 3 })).run(&["extract"]).fails_with(1, &["called `exit(1)`"]);
}

#[test]
fn a_guest_stack_overflow_is_a_trap_and_the_host_survives() {
    one(json!({ "mode": "recurse", "bytes": 100_000_000u64 }))
        .run(&["extract"])
        .fails_with(1, &["crashed (wasm trap)"]);
}

#[test]
fn a_50_mb_error_message_with_escapes_is_cut_and_escaped() {
    let run = one(json!({ "mode": "big-error", "bytes": 50u64 << 20 })).run(&["extract"]);
    run.fails_with(1, &["more bytes dropped", "\\u{1b}[2J", "plugin error"]);
}

#[test]
fn a_flood_of_diagnostics_is_capped_with_a_note() {
    let run = one(json!({ "mode": "many-diagnostics", "bytes": 100_000 })).run(&["extract"]);
    run.succeeds();
    let inv = &run.invocations()[0];
    let diagnostics = inv["diagnostics"].as_array().unwrap();
    assert_eq!(diagnostics.len(), 257, "256 kept and one note");
    assert!(diagnostics[256]["message"].as_str().unwrap().contains("99744 more diagnostics dropped"));
    assert!(run.stderr.lines().count() < 400, "{} lines", run.stderr.lines().count());
}

#[test]
fn a_megabyte_pointer_is_dropped_not_printed() {
    let run = one(json!({ "mode": "long-pointer", "bytes": 1 << 20 })).run(&["extract"]);
    run.succeeds();
    assert_eq!(run.invocations()[0]["diagnostics"][0]["pointer"], Value::Null);
}

#[test]
fn millions_of_empty_log_lines_are_charged_and_dropped() {
    let run = one(json!({ "mode": "log-flood", "bytes": 3_000_000 })).run_env(&["extract"], &[]);
    run.succeeds();
    // With the plugin's log shown, the kept lines are bounded by `limits.max-log-bytes`.
    let setup = one(json!({ "mode": "log-flood", "bytes": 3_000_000 }));
    let debug = setup.run_env_unchecked_size(&["extract"], &[("QPF_LOG", "debug")]);
    assert!(debug.contains("more log lines"), "the drop is reported");
    assert!(debug.lines().filter(|l| l.contains("qpf::plugin") || l.contains("level=Info")).count() <= 1100);
}

impl Setup {
    /// Runs and returns stderr without the size check (for debug logging).
    fn run_env_unchecked_size(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--project", self.path().to_str().unwrap()]);
        let mut cmd = std::process::Command::new(support::qpf_bin());
        cmd.args(&all);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.code().is_some(), "killed by a signal");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

#[test]
fn one_log_line_larger_than_a_host_call_may_carry_is_a_clear_transfer_error() {
    one(json!({ "mode": "log-huge", "bytes": 100u64 << 20 }))
        .run(&["extract"])
        .fails_with(1, &["transfer limit exceeded", "limits.max-output-bytes"]);
    // Within the per-call budget, a long line is simply cut by the log budget.
    one(json!({ "mode": "log-huge", "bytes": 1 << 20 })).run(&["extract"]).succeeds();
}

#[test]
fn plugin_logs_with_escape_sequences_are_escaped_on_the_terminal() {
    let setup = one(json!({ "mode": "log-escape" }));
    let stderr = setup.run_env_unchecked_size(&["extract"], &[("QPF_LOG", "debug")]);
    assert!(stderr.contains("forged line"), "the plugin's log is shown: {stderr}");
    assert!(!stderr.contains('\u{1b}'), "no raw escape from the plugin: {stderr:?}");
    assert!(!stderr.contains('\u{202e}'), "{stderr:?}");
    assert!(!stderr.contains("\nforged"), "{stderr:?}");
}

// ---- 3. Spawns: bounded records, no host recursion, untrusted names.

#[test]
fn a_hundred_thousand_spawn_requests_give_bounded_records() {
    let spawn = "    spawn: { plugins: [hostile], max-count: 32 }\n";
    let setup = Setup::new(&[("x", json!({ "mode": "spawn-many", "bytes": 100_000 }), spawn)], "");
    let run = setup.run(&["extract"]);
    run.fails_with(1, &["spawn request(s) refused"]);
    let rows = run.invocations();
    assert_eq!(rows.len(), 1 + 32 + 1, "the parent, 32 spawned, one refusal for the rest");
    let audit = std::fs::read_to_string(setup.path().join(".qpf/audit.jsonl")).unwrap();
    assert_eq!(audit.lines().count(), 34);
    // Replayed from the cache: the same bounded rows.
    let again = setup.run(&["extract"]);
    assert_eq!(again.invocations().len(), 34);
}

#[test]
fn a_spawn_chain_as_deep_as_the_policy_allows_runs_without_host_recursion() {
    let spawn = "    spawn: { plugins: [hostile], max-depth: 64, max-count: 10000 }\n";
    let setup = Setup::new(&[("x", json!({ "mode": "spawn-chain" }), spawn)], "");
    let run = setup.run(&["extract"]);
    run.fails_with(1, &["spawn.max-depth"]);
    assert_eq!(run.invocations().len(), 1 + 64 + 1);
    assert!(setup.path().join("out/x/chain-64.txt").is_file());
}

#[test]
fn a_spawn_policy_beyond_the_hard_ceilings_is_refused_at_load() {
    let spawn = "    spawn: { plugins: [hostile], max-depth: 3000 }\n";
    Setup::new(&[("x", json!({ "mode": "spawn-chain" }), spawn)], "")
        .run(&["validate"])
        .fails_with(1, &["map.yaml", "`spawn.max-depth` may be at most 64"]);
}

#[test]
fn a_spawn_of_an_undeclared_megabyte_name_is_refused_without_echoing_it() {
    let spawn = "    spawn: { plugins: [hostile] }\n";
    let run = Setup::new(&[("x", json!({ "mode": "spawn-name", "bytes": 1 << 20 }), spawn)], "").run(&["extract"]);
    run.fails_with(1, &["may not spawn plugin", "x>undeclared#0"]);
}

// ---- 4. Memory, fuel, output: the invocation's budgets.

#[test]
fn memory_fuel_and_output_limits_are_named() {
    Setup::new(&[("x", json!({ "mode": "grow" }), "")], "limits:\n  memory-bytes: 33554432\n")
        .run(&["extract"])
        .fails_with(1, &["memory limit exceeded", "limits.memory-bytes"]);
    Setup::new(&[("x", json!({ "mode": "loop" }), "")], "limits:\n  fuel: 100000000\n")
        .run(&["extract"])
        .fails_with(1, &["fuel limit exceeded", "limits.fuel"]);
    Setup::new(
        &[("x", json!({ "mode": "big-file", "bytes": 2_000_000 }), "")],
        "limits:\n  max-output-bytes: 1000000\n",
    )
    .run(&["extract"])
    .fails_with(1, &["limits.max-output-bytes"]);
    Setup::new(&[("x", json!({ "mode": "many-files", "bytes": 50 }), "")], "limits:\n  max-files: 10\n")
        .run(&["extract"])
        .fails_with(1, &["limits.max-files"]);
}

#[test]
fn a_component_whose_initial_memory_exceeds_the_limit_says_so() {
    // A componentize-py component starts with a 13 MB memory (and several smaller ones): under
    // an 8 MiB limit it is refused as over the sandbox's limits, not as "not a valid component".
    let dist = support::workspace_root().join("plugins/env-example/dist/env-example.wasm");
    let setup = Setup::with_plugin(Some(&dist), &[("x", json!({}), "")], "limits:\n  memory-bytes: 8388608\n");
    for file in ["schemas/probe.yaml", "qpf.yaml"] {
        let path = setup.path().join(file);
        let text = std::fs::read_to_string(&path).unwrap().replace("Probe", "Agent");
        std::fs::write(path, text).unwrap();
    }
    setup.run(&["extract"]).fails_with(1, &["cannot run within the sandbox's limits", "`limits.memory-bytes`"]);
}

// ---- 5. Randomness and the cache key.

#[test]
fn randomness_is_per_invocation_and_deterministic() {
    let setup = Setup::new(&[("r1", json!({ "mode": "random" }), ""), ("r2", json!({ "mode": "random" }), "")], "");
    setup.run(&["extract", "--no-cache"]).succeeds();
    let a = std::fs::read_to_string(setup.path().join("out/r1/random.txt")).unwrap();
    let b = std::fs::read_to_string(setup.path().join("out/r2/random.txt")).unwrap();
    assert_ne!(a, b, "two invocations draw different bytes");
    std::fs::remove_dir_all(setup.path().join("out")).unwrap();
    setup.run(&["extract", "--no-cache"]).succeeds();
    assert_eq!(
        std::fs::read_to_string(setup.path().join("out/r1/random.txt")).unwrap(),
        a,
        "the same invocation draws the same bytes"
    );
}

#[test]
fn two_entries_with_the_same_plugin_input_and_config_each_get_their_own_output() {
    let setup =
        Setup::new(&[("first", json!({ "mode": "entry" }), ""), ("second", json!({ "mode": "entry" }), "")], "");
    setup.run(&["extract"]).succeeds();
    assert_eq!(std::fs::read_to_string(setup.path().join("out/second/entry.txt")).unwrap(), "second\n");
    assert_eq!(std::fs::read_to_string(setup.path().join("out/first/entry.txt")).unwrap(), "first\n");
}

// ---- 6. Hostile info(): budgets on what the host keeps, prints and compiles.

#[test]
fn hostile_info_fields_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    for (mode, needles) in [
        ("huge-version", &["`info()` returned more than 1048576 bytes"][..]),
        ("huge-name", &["`info()` returned more than 1048576 bytes"][..]),
        ("long-version", &["`info()` returned the version", "64 bytes"][..]),
        ("esc-name", &["`info()` returned the name", "\\u{1b}"][..]),
        ("bidi-description", &["U+202E"][..]),
        ("many-kinds", &["1000 kinds"][..]),
        ("newline-kind", &["the kind"][..]),
        ("huge-schema", &["config schema of"][..]),
    ] {
        let wasm = patched_guest(tmp.path(), mode);
        let run = Setup::with_plugin(Some(&wasm), &[("x", json!({ "mode": "echo" }), "")], "").run(&["extract"]);
        run.fails_with(1, needles);
    }
}

#[test]
fn hostile_config_schemas_are_refused_within_their_budget() {
    let tmp = tempfile::tempdir().unwrap();
    for (mode, needle) in [
        ("deep-schema", "expands to more than 20000 subschemas"),
        ("remote-ref", "not a local JSON Pointer"),
        ("recursive-schema", "refers to itself"),
        ("bad-schema", "not JSON"),
    ] {
        let wasm = patched_guest(tmp.path(), mode);
        let run = Setup::with_plugin(Some(&wasm), &[("x", json!({ "mode": "echo" }), "")], "").run(&["extract"]);
        run.fails_with(1, &[needle, "config"]);
    }
}

#[test]
fn a_backtracking_pattern_in_a_config_schema_runs_in_linear_time() {
    let tmp = tempfile::tempdir().unwrap();
    let wasm = patched_guest(tmp.path(), "backtracking-schema");
    let evil = format!("{}!", "a".repeat(5000));
    let run = Setup::with_plugin(Some(&wasm), &[("x", json!({ "mode": evil }), "")], "").run(&["extract"]);
    run.fails_with(1, &["does not match what plugin `hostile` accepts"]);
}

#[test]
fn info_runs_under_the_projects_limits() {
    let tmp = tempfile::tempdir().unwrap();
    for (mode, limits, needle) in [
        ("loop", "limits:\n  fuel: 100000000\n", "fuel limit exceeded"),
        ("grow", "limits:\n  memory-bytes: 33554432\n", "memory limit exceeded"),
        ("trap", "", "hostile info() panics on purpose"),
        ("exit", "", "called `exit(0)`"),
    ] {
        let wasm = patched_guest(tmp.path(), mode);
        let run = Setup::with_plugin(Some(&wasm), &[("x", json!({ "mode": "echo" }), "")], limits).run(&["extract"]);
        run.fails_with(1, &[needle]);
    }
}

// ---- 7. Loading: size, functions, compile time, odd files.

#[test]
fn load_limits_bound_what_compiling_a_plugin_may_cost() {
    let echo = [("x", json!({ "mode": "echo" }), "")];
    Setup::new(&echo, "load-limits:\n  max-component-bytes: 1000\n")
        .run(&["extract"])
        .fails_with(1, &["`load-limits.max-component-bytes`"]);
    Setup::new(&echo, "load-limits:\n  max-functions: 10\n")
        .run_env(&["extract"], &[("QPF_COMPILED_CACHE", tempfile::tempdir().unwrap().path().to_str().unwrap())])
        .fails_with(1, &["functions, over the limit of 10", "`load-limits.max-functions`"]);
    Setup::new(&echo, "load-limits:\n  compile-ms: 1\n")
        .run_env(&["extract"], &[("QPF_COMPILED_CACHE", tempfile::tempdir().unwrap().path().to_str().unwrap())])
        .fails_with(1, &["did not compile within 1 ms"]);
}

#[test]
fn plugin_files_that_are_not_components_or_not_regular_are_refused_with_their_path() {
    let tmp = tempfile::tempdir().unwrap();
    let garbage = tmp.path().join("garbage.wasm");
    std::fs::write(&garbage, b"\0asm\x01\0\0\0 not really").unwrap();
    Setup::with_plugin(Some(&garbage), &[("x", json!({}), "")], "")
        .run(&["extract"])
        .fails_with(1, &["garbage.wasm", "not a valid WebAssembly component"]);
    let folder = tmp.path().join("folder.wasm");
    std::fs::create_dir_all(&folder).unwrap();
    Setup::with_plugin(Some(&folder), &[("x", json!({}), "")], "")
        .run(&["extract"])
        .fails_with(1, &["folder.wasm", "not a regular file"]);
    let fifo = tmp.path().join("fifo.wasm");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    Setup::with_plugin(Some(&fifo), &[("x", json!({}), "")], "")
        .run(&["extract"])
        .fails_with(1, &["fifo.wasm", "FIFO"]);
}

// ---- 8. Project inputs that are not regular files.

fn mkfifo(path: &Path) {
    let _ = std::fs::remove_file(path);
    assert!(std::process::Command::new("mkfifo").arg(path).status().unwrap().success());
}

#[test]
fn a_fifo_among_the_schemas_map_or_kinds_is_refused_not_waited_on() {
    for (file, needle) in
        [("schemas/pipe.yaml", "schemas/pipe.yaml"), ("map.yaml", "map.yaml"), ("probe.schema.json", "kind `Probe`")]
    {
        let setup = one(json!({ "mode": "echo" }));
        mkfifo(&setup.path().join(file));
        setup.run(&["validate"]).fails_with(1, &[needle, "FIFO"]);
    }
}

#[test]
fn a_kind_file_that_links_outside_the_project_is_refused() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("k.json"), support::PROBE_KIND).unwrap();
    let setup = one(json!({ "mode": "echo" }));
    std::fs::remove_file(setup.path().join("probe.schema.json")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("k.json"), setup.path().join("probe.schema.json")).unwrap();
    setup.run(&["validate"]).fails_with(1, &["outside the project folder"]);
}

// ---- 9. Output roots that would reach the project's state, inputs or plugins.

#[test]
fn output_roots_that_reach_state_inputs_or_plugins_are_refused() {
    let echo = [("x", json!({ "mode": "echo" }), "")];
    for (output, needle) in [
        (".qpf", "state folder"),
        (".qpf/cache/compiled", "is inside the project's state folder"),
        ("qpf.lock", "the lock"),
        ("schemas", "contains a schema"),
        ("schemas/probe.yaml", "is a schema"),
        (".", "contains"),
        ("map.yaml", "the extractor map"),
        ("probe.schema.json", "kind `Probe`"),
    ] {
        let setup = Setup::new(&echo, &format!("output: {output}\n"));
        setup.run(&["extract"]).fails_with(74, &["output root", needle]);
    }
    let setup = Setup::new(&echo, "");
    let plugin_dir = support::wasm("qpf_hostile").parent().unwrap().to_owned();
    setup
        .run(&["extract", "--out", plugin_dir.to_str().unwrap()])
        .fails_with(74, &["the component of plugin `hostile`"]);
    std::fs::create_dir_all(setup.path().join(".qpf")).unwrap();
    std::os::unix::fs::symlink(setup.path().join(".qpf"), setup.path().join("innocent")).unwrap();
    setup.run(&["extract", "--out", setup.path().join("innocent").to_str().unwrap()]).fails_with(74, &["state folder"]);
}

// ---- 10. Caches: nothing loaded back unless this user's qpf made it.

/// The echo guest's project, extracted once with a private compiled cache in its `.qpf/` (which
/// a forger can write, as a project folder could be when a project points `QPF_COMPILED_CACHE`
/// into it): the setup, that folder, and the one compiled artifact.
fn compiled_once() -> (Setup, PathBuf, PathBuf) {
    let setup = one(json!({ "mode": "echo" }));
    let compiled = setup.path().join(".qpf/cache/compiled");
    setup.run_env(&["extract"], &[("QPF_COMPILED_CACHE", compiled.to_str().unwrap())]).succeeds();
    let artifacts: Vec<PathBuf> =
        support::walk(&compiled).into_iter().filter(|p| p.extension().is_some_and(|e| e == "cwasm")).collect();
    assert_eq!(artifacts.len(), 1);
    let artifact = artifacts[0].clone();
    (setup, compiled, artifact)
}

#[test]
fn a_forged_compiled_artifact_is_recompiled_not_loaded() {
    let (setup, compiled, artifact) = compiled_once();
    let artifacts = [artifact];
    let env = [("QPF_COMPILED_CACHE", compiled.to_str().unwrap())];
    // A forger who can write the project folder replaces the native code and "fixes" the sidecar
    // the way a plain digest would have allowed.
    let forged = b"\x7fELF forged native code".to_vec();
    std::fs::write(&artifacts[0], &forged).unwrap();
    let sidecar = artifacts[0].with_extension("json");
    let mut meta: Value = serde_json::from_slice(&std::fs::read(&sidecar).unwrap()).unwrap();
    meta["mac"] = json!(blake3::hash(&forged).to_hex().to_string());
    std::fs::write(&sidecar, serde_json::to_vec(&meta).unwrap()).unwrap();
    std::fs::remove_dir_all(setup.path().join("out")).unwrap();
    setup.run_env(&["extract", "--no-cache"], &env).succeeds();
    assert_ne!(std::fs::read(&artifacts[0]).unwrap(), forged, "the forged artifact was replaced by a fresh compile");
    assert!(setup.path().join("out/x/echo.json").is_file());
}

#[test]
fn a_compiled_artifact_mapped_without_hashing_is_hashed_again_once_written_even_with_its_old_times() {
    let (setup, compiled, artifact) = compiled_once();
    let artifacts = [artifact];
    let env = [("QPF_COMPILED_CACHE", compiled.to_str().unwrap())];
    let sidecar = artifacts[0].with_extension("json");
    // Settled, then loaded and verified once: the sidecar records the file's stat.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    setup.run_env(&["extract", "--no-cache"], &env).succeeds();
    let meta: Value = serde_json::from_slice(&std::fs::read(&sidecar).unwrap()).unwrap();
    assert!(meta["artifact"]["stat"]["ino"].is_u64(), "{meta}");
    setup.run_env(&["extract", "--no-cache"], &env).succeeds();

    // Native code changed in place, same size, its modification time put back.
    let mtime = std::fs::metadata(&artifacts[0]).unwrap().modified().unwrap();
    let mut bytes = std::fs::read(&artifacts[0]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&artifacts[0], &bytes).unwrap();
    std::fs::File::options().write(true).open(&artifacts[0]).unwrap().set_modified(mtime).unwrap();
    let tampered = std::fs::read(&artifacts[0]).unwrap();
    setup.run_env(&["extract", "--no-cache"], &env).succeeds();
    assert_ne!(std::fs::read(&artifacts[0]).unwrap(), tampered, "hashed, refused and compiled again");
    assert!(setup.path().join("out/x/echo.json").is_file());
}

#[test]
fn a_forged_cache_manifest_is_never_replayed() {
    let setup = one(json!({ "mode": "echo" }));
    setup.run(&["extract"]).succeeds();
    let good = std::fs::read(setup.path().join("out/x/echo.json")).unwrap();
    let manifests: Vec<PathBuf> = support::walk(&setup.path().join(".qpf/cache/invocations/manifests"));
    assert_eq!(manifests.len(), 1);
    // Plant a blob with other contents and a manifest pointing at it, sealed with a plain digest.
    let evil = b"{\"pwned\":true}".to_vec();
    let evil_digest = format!("blake3:{}", blake3::hash(&evil).to_hex());
    let blob_dir = setup.path().join(".qpf/cache/invocations/blobs").join(&evil_digest[7..9]);
    std::fs::create_dir_all(&blob_dir).unwrap();
    std::fs::write(blob_dir.join(&evil_digest[7..]), &evil).unwrap();
    let text = std::fs::read_to_string(&manifests[0]).unwrap();
    let (header, json_text) = text.split_once('\n').unwrap();
    // The current format (`qpf-manifest/N`), so that the forgery is read, not skipped as old.
    let format = header.split(' ').next().unwrap();
    let mut manifest: Value = serde_json::from_str(json_text).unwrap();
    manifest["files"][0]["digest"] = json!(evil_digest);
    manifest["files"][0]["size"] = json!(evil.len());
    manifest["files"][0].as_object_mut().unwrap().remove("inline");
    let body = serde_json::to_string(&manifest).unwrap();
    let forged = format!("{format} mac:{}\n{body}", blake3::hash(body.as_bytes()).to_hex());
    std::fs::write(&manifests[0], forged).unwrap();
    std::fs::remove_dir_all(setup.path().join("out")).unwrap();
    let run = setup.run(&["extract"]);
    run.succeeds();
    assert_eq!(std::fs::read(setup.path().join("out/x/echo.json")).unwrap(), good, "the plugin ran again");
    assert!(run.stderr.contains("corrupted"), "the forgery is reported: {}", run.stderr);
}

// ---- 11. A hand-written component whose core instances hoard memory and tables together.

/// `tests/guests/wat/hoarder.wat`, assembled.
fn hoarder(dir: &Path) -> PathBuf {
    let source = support::workspace_root().join("tests/guests/wat/hoarder.wat");
    let bytes = wat::parse_file(&source).expect("hoarder.wat assembles");
    let path = dir.join("hoarder.wasm");
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn memories_and_tables_of_many_core_instances_count_together() {
    let tmp = tempfile::tempdir().unwrap();
    let wasm = hoarder(tmp.path());
    let entry = [("x", json!({}), "")];
    // Three 16 MiB memories and 300 000-element tables: each alone is within these limits.
    Setup::with_plugin(Some(&wasm), &entry, "limits:\n  memory-bytes: 33554432\n")
        .run(&["extract"])
        .fails_with(1, &["memory limit exceeded", "over the limit of 33554432 bytes", "`limits.memory-bytes`"]);
    Setup::with_plugin(Some(&wasm), &entry, "limits:\n  table-elements: 500000\n")
        .run(&["extract"])
        .fails_with(1, &["table limit exceeded", "over the limit of 500000", "`limits.table-elements`"]);
    // Within the defaults (256 MiB, 1 048 576 elements) the same component runs.
    Setup::with_plugin(Some(&wasm), &entry, "").run(&["extract"]).succeeds();
}
