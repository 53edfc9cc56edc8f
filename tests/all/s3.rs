//! An S3 server in the calling process, for the remote cache tests and benchmarks: `s3s` over
//! `s3s-fs`, on a loopback port, storing buckets as folders. Shared by `tests/all` and
//! `tests/benches` (which include it by path).

use std::path::{Path, PathBuf};

/// An S3 server (`s3s` over `s3s-fs`) in this process, on a loopback port, storing buckets as
/// folders; stopped when dropped.
pub struct S3s {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    root: tempfile::TempDir,
    _runtime: tokio::runtime::Runtime,
}

/// The access key the server accepts.
pub const ACCESS_KEY: &str = "qpf-test-access";
/// Its secret.
pub const SECRET_KEY: &str = "qpf-test-secret";

impl S3s {
    /// Starts it, with one bucket, `cache`.
    pub fn start() -> S3s {
        let root = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(root.path().join("cache")).expect("the bucket");
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let fs = s3s_fs::FileSystem::new(root.path()).expect("s3s-fs");
        let mut builder = s3s::service::S3ServiceBuilder::new(fs);
        builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();
        runtime.spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                // As real S3 front ends do: without it, Nagle's algorithm and delayed ACKs add
                // 40 ms to many small responses.
                let _ = socket.set_nodelay(true);
                let service = service.clone();
                tokio::spawn(async move {
                    let io = hyper_util::rt::TokioIo::new(socket);
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
                });
            }
        });
        S3s { endpoint, root, _runtime: runtime }
    }

    /// Every object under the bucket, by key, sorted.
    pub fn objects(&self) -> Vec<PathBuf> {
        let bucket = self.root.path().join("cache");
        let mut out = Vec::new();
        let mut stack = vec![bucket.clone()];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = e.path();
                if path.is_dir() {
                    stack.push(path);
                } else if !path.to_string_lossy().contains(".s3s") {
                    out.push(path.strip_prefix(&bucket).expect("in the bucket").to_owned());
                }
            }
        }
        out.sort();
        out
    }

    /// The file holding the object `key`.
    pub fn object(&self, key: &Path) -> PathBuf {
        self.root.path().join("cache").join(key)
    }
}
