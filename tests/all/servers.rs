//! Real Redis and PostgreSQL servers on loopback ports, for the generated services' backend tests:
//! Debian's packages (installed by `./dev tools`), each in a temporary folder, under `timeout` so
//! that a dying test process cannot leave one behind, and stopped when dropped.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support;

/// Longest life of a server process (seconds), whatever happens to the test.
const LIFETIME_S: &str = "900";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

fn wait_until(what: &str, child: &mut Child, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited with {status} before it was ready");
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{what} was not ready within 60 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stops a server with `signal` (`timeout` passes it on) and waits for it.
fn stop(child: &mut Child, signal: &str) {
    let _ = Command::new("kill").args([signal, &child.id().to_string()]).status();
    let _ = child.wait();
}

/// A Redis server without persistence.
pub struct Redis {
    /// `redis://127.0.0.1:PORT/0`.
    pub url: String,
    child: Child,
}

impl Redis {
    /// Starts one and waits until it accepts connections.
    pub fn start() -> Redis {
        support::tools();
        let port = free_port();
        let mut child = Command::new("timeout")
            .args([LIFETIME_S, "redis-server", "--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "yes"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts (./dev tools installs it)");
        wait_until("redis-server", &mut child, || TcpStream::connect(("127.0.0.1", port)).is_ok());
        Redis { url: format!("redis://127.0.0.1:{port}/0"), child }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        stop(&mut self.child, "-TERM");
    }
}

/// A PostgreSQL cluster of its own (trust authentication on loopback, durability off: tests).
pub struct Postgres {
    /// `postgresql://postgres@127.0.0.1:PORT/postgres`.
    pub url: String,
    port: u16,
    bin: PathBuf,
    data: PathBuf,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

/// The newest installed PostgreSQL's programs.
fn postgres_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path().join("bin"))).filter(|b| b.join("initdb").is_file()).collect()
        })
        .unwrap_or_default();
    versions.sort_by_key(|p| p.parent().and_then(|v| v.file_name()?.to_str()?.parse::<u32>().ok()).unwrap_or(0));
    versions.pop().expect("PostgreSQL under /usr/lib/postgresql (./dev tools installs it)")
}

fn is_root() -> bool {
    static ROOT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ROOT.get_or_init(|| Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n")))
}

/// `program`, run as the `postgres` user when this test runs as root (PostgreSQL refuses root),
/// through `setpriv`, which execs: signals reach the server itself. `wrapper` goes first (e.g.
/// `timeout 900`).
fn as_postgres(wrapper: &[&str], program: &Path) -> Command {
    let mut words: Vec<&str> = wrapper.to_vec();
    if is_root() {
        words.extend(["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"]);
    }
    let mut cmd = match words.split_first() {
        Some((first, rest)) => {
            let mut cmd = Command::new(first);
            cmd.args(rest);
            cmd.arg(program);
            cmd
        }
        None => Command::new(program),
    };
    cmd.stdin(Stdio::null());
    cmd
}

impl Postgres {
    /// Creates a cluster, starts it and waits until it accepts queries.
    pub fn start() -> Postgres {
        support::tools();
        let bin = postgres_bin();
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).expect("data dir");
        if is_root() {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
            let status = Command::new("chown").args(["-R", "postgres:postgres"]).arg(&data).status().expect("chown");
            assert!(status.success(), "chown postgres {}", data.display());
        }
        let out = as_postgres(&[], &bin.join("initdb"))
            .args(["-D"])
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8", "--locale=C"])
            .output()
            .expect("initdb runs");
        assert!(out.status.success(), "initdb: {}", support::show(&out));
        let mut pg = Postgres { url: String::new(), port: free_port(), bin, data, child: None, _dir: dir };
        pg.url = format!("postgresql://postgres@127.0.0.1:{}/postgres", pg.port);
        pg.spawn();
        pg
    }

    fn spawn(&mut self) {
        let mut child = as_postgres(&["timeout", LIFETIME_S], &self.bin.join("postgres"))
            .arg("-D")
            .arg(&self.data)
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-k"])
            .arg(&self.data)
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("postgres starts");
        let (bin, port) = (self.bin.clone(), self.port.to_string());
        wait_until("postgres", &mut child, || {
            Command::new(bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &port, "-U", "postgres"])
                .status()
                .is_ok_and(|s| s.success())
        });
        self.child = Some(child);
    }

    /// Stops the server (every connection is cut) and starts it again on the same port and data.
    pub fn restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGINT: a fast shutdown, which cuts the clients (SIGTERM would wait for them).
            stop(&mut child, "-INT");
        }
        self.spawn();
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop(&mut child, "-INT");
        }
    }
}
