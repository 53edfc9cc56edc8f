//! Measured recovery of a generated service (`cargo bench -p qpf --bench qpf -- recovery`, issue
//! 18): the example's `orchestrator`, three replicas (uvicorn processes) sharing a real Redis
//! (append-only file on, fsync always) for their swarm and working memory, a team `handlers.py`
//! whose `dispatch` takes 50 ms. Timed, wall clock, one run each:
//! - a replica killed (SIGKILL) while the swarm has work: until every task submitted before the
//!   kill is done (the dead replica's task is claimed by another once it has been silent for
//!   `SWARM_RECLAIM_AFTER_S` = 2 s), and the replica restarted until its `/ready` answers 200;
//! - Redis killed and started again on its files: until every replica's `/ready` answers 200
//!   again, and until a task submitted then is done.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The team's `handlers.py` of the run: `dispatch` works 50 ms and assigns the task.
const HANDLERS: &str = r#"
import asyncio
import datetime

from . import models
from .capabilities import Handlers as GeneratedHandlers


class Handlers(GeneratedHandlers):
    async def dispatch(self, body: models.Task) -> models.Assignment:
        await asyncio.sleep(0.05)
        return models.Assignment(task_id=body.id, agent="trainer", accepted_at=datetime.datetime.now(datetime.UTC))
"#;

/// A process killed (SIGKILL) when dropped, with its children: a server runs under `timeout`, so
/// that a bench that dies cannot leave it behind, and killing `timeout` alone would.
struct Killed(Child);

impl Killed {
    fn kill(&mut self) {
        let _ = Command::new("pkill").args(["-KILL", "-P", &self.0.id().to_string()]).status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a port").port()
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into()
}

/// (status, body) of a request; status 0 when nothing answers.
fn call(port: u16, method: &str, path: &str, body: Option<&serde_json::Value>) -> (u16, serde_json::Value) {
    let url = format!("http://127.0.0.1:{port}{path}");
    let agent = agent();
    let response = match (method, body) {
        ("POST", Some(b)) => agent.post(&url).header("Content-Type", "application/json").send(b.to_string()),
        _ => agent.get(&url).call(),
    };
    match response {
        Ok(mut r) => {
            let status = r.status().as_u16();
            let text = r.body_mut().read_to_string().unwrap_or_default();
            (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
        }
        Err(_) => (0, serde_json::Value::Null),
    }
}

fn until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    started.elapsed()
}

fn redis(port: u16, dir: &Path) -> Killed {
    let child = Command::new("timeout")
        .args(["600", "redis-server", "--bind", "127.0.0.1", "--port", &port.to_string(), "--save", ""])
        .args(["--appendonly", "yes", "--appendfsync", "always", "--dir"])
        .arg(dir)
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server (./dev tools installs it)");
    until("redis-server starts", Duration::from_secs(30), || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    Killed(child)
}

fn replica(venv: &Path, service: &Path, port: u16, redis_url: &str) -> Killed {
    let child = Command::new(venv.join("bin/python"))
        .args(["-m", "uvicorn", "--factory", "orchestrator.app:create_app", "--host", "127.0.0.1"])
        .args(["--port", &port.to_string(), "--log-level", "warning"])
        .current_dir(service)
        .env("PYTHONPATH", service.join("src"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("ORCHESTRATOR_AUTH", "none")
        .env("ORCHESTRATOR_LOG_LEVEL", "ERROR")
        .env("ORCHESTRATOR_SWARM_REDIS_URL", redis_url)
        .env("ORCHESTRATOR_SWARM_RECLAIM_AFTER_S", "2")
        .env("ORCHESTRATOR_MEMORY_WORKING_URL", redis_url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("uvicorn starts");
    Killed(child)
}

fn ready(port: u16) -> bool {
    call(port, "GET", "/ready", None).0 == 200
}

fn submit(port: u16, n: usize) -> String {
    let task = serde_json::json!({ "capability": "dispatch", "input": { "id": format!("t{n}"), "kind": "train" } });
    let (status, body) = call(port, "POST", "/swarm/tasks", Some(&task));
    assert_eq!(status, 202, "{body}");
    body["id"].as_str().expect("an id").to_owned()
}

fn state(port: u16, id: &str) -> String {
    call(port, "GET", &format!("/swarm/tasks/{id}"), None).1["state"].as_str().unwrap_or("").to_owned()
}

/// Runs the scenarios on the `orchestrator` service extracted in `service` with the Python of `venv`.
pub fn run(venv: &Path, service: &Path, fmt: fn(Duration) -> String) {
    std::fs::write(service.join("src/orchestrator/handlers.py"), HANDLERS).expect("handlers.py");
    let data = tempfile::tempdir().expect("temp dir");
    let redis_port = free_port();
    let url = format!("redis://127.0.0.1:{redis_port}/0");
    let mut server = redis(redis_port, data.path());
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut replicas: Vec<Killed> = ports.iter().map(|&p| replica(venv, service, p, &url)).collect();
    let boot = until("the replicas are ready", Duration::from_secs(60), || ports.iter().all(|&p| ready(p)));
    println!("{:<52} {:>12}", "recovery: three replicas start, until /ready", fmt(boot));

    // A replica dies while the swarm has work.
    let ids: Vec<String> = (0..60).map(|n| submit(ports[0], n)).collect();
    until("work starts", Duration::from_secs(30), || {
        ids.iter().filter(|id| state(ports[0], id) == "done").count() >= 10
    });
    replicas[2].kill();
    let resumed =
        until("the work is done", Duration::from_secs(120), || ids.iter().all(|id| state(ports[0], id) == "done"));
    println!("{:<52} {:>12}", "recovery: replica killed, until all its work is done", fmt(resumed));
    replicas[2] = replica(venv, service, ports[2], &url);
    let back = until("the replica is back", Duration::from_secs(60), || ready(ports[2]));
    println!("{:<52} {:>12}", "recovery: replica restarted, until /ready", fmt(back));

    // Redis dies and comes back on its files.
    let before = submit(ports[1], 1000);
    server.kill();
    let down = until("the replicas notice", Duration::from_secs(30), || ports.iter().all(|&p| !ready(p)));
    let restarted = Instant::now();
    server = redis(redis_port, data.path());
    let ready_again = until("/ready again", Duration::from_secs(120), || ports.iter().all(|&p| ready(p)));
    let after = submit(ports[1], 1001);
    until("work resumes", Duration::from_secs(120), || {
        state(ports[1], &after) == "done" && state(ports[1], &before) == "done"
    });
    let work_again = restarted.elapsed();
    println!("{:<52} {:>12}", "recovery: Redis down, until every /ready says so", fmt(down));
    println!("{:<52} {:>12}", "recovery: Redis restarted, until every /ready is 200", fmt(ready_again));
    println!("{:<52} {:>12}", "recovery: Redis restarted, until work is done again", fmt(work_again));
    drop(replicas);
    drop(server);
}
