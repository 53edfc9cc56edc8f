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
    /// While set, every request is answered 503 Service Unavailable: a store that went down.
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
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
        let down = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = down.clone();
        runtime.spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                // As real S3 front ends do: without it, Nagle's algorithm and delayed ACKs add
                // 40 ms to many small responses.
                let _ = socket.set_nodelay(true);
                let (service, flag) = (service.clone(), flag.clone());
                let gate = hyper::service::service_fn(move |request| {
                    let (service, down) = (service.clone(), flag.load(std::sync::atomic::Ordering::SeqCst));
                    async move {
                        if down {
                            let mut unavailable = s3s::HttpResponse::new(s3s::Body::empty());
                            *unavailable.status_mut() = hyper::StatusCode::SERVICE_UNAVAILABLE;
                            return Ok(unavailable);
                        }
                        hyper::service::Service::call(&service, request).await
                    }
                });
                tokio::spawn(async move {
                    let io = hyper_util::rt::TokioIo::new(socket);
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, gate).await;
                });
            }
        });
        S3s { endpoint, root, down, _runtime: runtime }
    }

    /// Takes the store down (every request answered 503) or brings it back.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::SeqCst);
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
