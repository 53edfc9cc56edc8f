//! `qpf watch`: a saved change is re-extracted at once, and only what it affects.

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use crate::support::{self, show};

#[test]
fn a_saved_schema_change_is_re_extracted_and_reported() {
    let project = support::example_project();
    let p = project.path();
    let mut child = std::process::Command::new(support::qpf_bin())
        .args(["watch", "--project", p.to_str().unwrap(), "--interval", "50", "--rounds", "2"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let started = Instant::now();
    loop {
        let line = lines.next().expect("watch keeps running").unwrap();
        if line.starts_with("watching") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "watch never became ready");
    }
    let monitor = p.join("agents/monitor.yaml");
    let text = std::fs::read_to_string(&monitor).unwrap();
    std::fs::write(&monitor, text.replace("default: warning", "default: critical")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "watch did not pick up the change");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let second = stdout.lines().skip_while(|l| !l.starts_with("10 invocations")).skip(1).collect::<Vec<_>>().join("\n");
    assert!(second.contains("written   monitor/src/monitor/models.py"), "{stdout}");
    assert!(second.contains("10 invocations (2 run, 8 cached, 0 failed)"), "{stdout}");
    assert!(std::fs::read_to_string(p.join("out/monitor/src/monitor/models.py")).unwrap().contains("\"critical\""));
}
