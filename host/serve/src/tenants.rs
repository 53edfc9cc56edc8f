//! Tenants: who a bearer token acts as, and each tenant's quotas.
//!
//! A token is compared by its blake3 digest (constant-time equality) against every configured
//! digest, without stopping at the first match, so neither the clear token nor the timing of a
//! failed guess tells anything. Each tenant gets its own plugin store, invocation cache (its own
//! folder and MAC key, and keys salted with the tenant: no cross-tenant hit, no way to learn what
//! another tenant ran) and audit log under `data/tenants/<id>/`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use qpf_engine::pack_cache::PackCache;
use tokio::sync::Semaphore;

use crate::config::{ServeConfig, TenantConfig};

/// One tenant, with its state for the life of one configuration.
#[derive(Debug)]
pub struct Tenant {
    /// The tenant's id.
    pub id: String,
    /// Its configuration.
    pub config: TenantConfig,
    /// Its sandbox limits (the defaults under its ceilings).
    pub limits: qpf_runtime::Limits,
    /// `data/tenants/<id>`.
    pub dir: PathBuf,
    /// Its invocation cache (opened once, kept across reloads).
    pub cache: Arc<PackCache>,
    /// The salt mixed into its cache keys.
    pub salt: [u8; 32],
    /// Keys the MACs of its caches.
    pub secret: [u8; 32],
    /// Its requests served at once.
    pub concurrency: Arc<Semaphore>,
    /// Its audit log, opened for appending on first use and kept open; the lock serialises
    /// appends.
    audit: Mutex<Option<std::fs::File>>,
    requests: Mutex<Bucket>,
    fuel: Mutex<Bucket>,
}

/// A token bucket refilled continuously: `capacity` per minute.
#[derive(Debug)]
struct Bucket {
    capacity: f64,
    level: f64,
    at: Instant,
}

impl Bucket {
    fn new(per_minute: f64) -> Self {
        Bucket { capacity: per_minute, level: per_minute, at: Instant::now() }
    }

    fn refill(&mut self) {
        let now = Instant::now();
        let rate = self.capacity / 60.0;
        self.level = (self.level + rate * now.duration_since(self.at).as_secs_f64()).min(self.capacity);
        self.at = now;
    }

    /// How long until `amount` is available, if it is not now.
    fn wait_for(&self, amount: f64) -> Duration {
        let missing = (amount - self.level).max(0.0);
        Duration::from_secs_f64((missing / (self.capacity / 60.0)).min(3600.0))
    }
}

/// A request over quota: retry after this long.
#[derive(Debug, Clone, Copy)]
pub struct OverQuota {
    /// Which quota.
    pub quota: &'static str,
    /// When to retry.
    pub retry_after: Duration,
}

impl Tenant {
    fn new(
        config: &TenantConfig,
        data: &std::path::Path,
        secret: &[u8; 32],
        cache: Option<Arc<PackCache>>,
    ) -> Result<Tenant, qpf_engine::cache::CacheError> {
        let dir = data.join("tenants").join(&config.id);
        let tenant_secret = blake3::Hasher::new_derive_key("qpf serve tenant secret v1")
            .update(secret)
            .update(config.id.as_bytes())
            .finalize();
        let cache = match cache {
            Some(c) => c,
            None => Arc::new(PackCache::open(
                &dir.join("cache"),
                tenant_secret.as_bytes(),
                qpf_engine::pack_cache::DEFAULT_PACK_BYTES,
            )?),
        };
        let salt = *blake3::Hasher::new_derive_key("qpf serve tenant key salt v1")
            .update(tenant_secret.as_bytes())
            .finalize()
            .as_bytes();
        Ok(Tenant {
            id: config.id.clone(),
            limits: config.limits.apply(&qpf_runtime::Limits::default()),
            cache,
            salt,
            secret: *tenant_secret.as_bytes(),
            dir,
            concurrency: Arc::new(Semaphore::new(config.quotas.concurrent as usize)),
            requests: Mutex::new(Bucket::new(f64::from(config.quotas.requests_per_minute))),
            fuel: Mutex::new(Bucket::new(config.quotas.fuel_per_minute as f64)),
            audit: Mutex::new(None),
            config: config.clone(),
        })
    }

    /// Takes one request from the per-minute quota.
    ///
    /// # Errors
    /// [`OverQuota`] when the bucket is empty.
    pub fn admit_request(&self) -> Result<(), OverQuota> {
        let mut b = self.requests.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        b.refill();
        if b.level >= 1.0 {
            b.level -= 1.0;
            Ok(())
        } else {
            Err(OverQuota { quota: "requests-per-minute", retry_after: b.wait_for(1.0) })
        }
    }

    /// Checks that the fuel quota is not spent (an invocation may then consume up to its limit).
    ///
    /// # Errors
    /// [`OverQuota`] while the fuel spent in the last minute is at the quota.
    pub fn admit_fuel(&self) -> Result<(), OverQuota> {
        let mut b = self.fuel.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        b.refill();
        if b.level > 0.0 { Ok(()) } else { Err(OverQuota { quota: "fuel-per-minute", retry_after: b.wait_for(1.0) }) }
    }

    /// Charges fuel an invocation consumed.
    pub fn charge_fuel(&self, fuel: u64) {
        let mut b = self.fuel.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        b.refill();
        b.level -= fuel as f64;
    }

    /// The invocation key of this tenant for a plan-level key: salted, so that equal requests of
    /// two tenants never share an entry, and a key seen by one tells nothing about another's.
    pub fn salted_key(&self, key: &str) -> String {
        qpf_core::Digest::from_hash(blake3::keyed_hash(&self.salt, key.as_bytes())).to_string()
    }

    /// Appends one whole record (a line) to `data/tenants/<id>/audit.jsonl`, with one `write`.
    ///
    /// # Errors
    /// When the log cannot be opened or written.
    pub fn append_audit(&self, line: &[u8]) -> std::io::Result<()> {
        let mut file = self.audit.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if file.is_none() {
            std::fs::create_dir_all(&self.dir)?;
            *file = Some(std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("audit.jsonl"))?);
        }
        match file.as_mut() {
            Some(f) => std::io::Write::write_all(f, line),
            None => Ok(()),
        }
    }

    /// `data/tenants/<id>/plugins`.
    pub fn plugin_dir(&self) -> PathBuf {
        self.dir.join("plugins")
    }
}

/// Every tenant of one configuration, and the token digests that act as them.
#[derive(Debug)]
pub struct Tenants {
    all: Vec<Arc<Tenant>>,
    tokens: Vec<(blake3::Hash, Arc<Tenant>)>,
    operators: Vec<blake3::Hash>,
}

/// A configured digest as a hash with constant-time `==` (checked by `ServeConfig::load`).
fn parse_digest(digest: &str) -> Option<blake3::Hash> {
    qpf_core::Digest::parse(digest).ok().map(|d| d.to_hash())
}

impl Tenants {
    /// The tenants of `config`, their state under `config.data`; a tenant already in `previous`
    /// (a reload) keeps its open cache.
    ///
    /// # Errors
    /// When a tenant's cache cannot be opened: `(tenant id, why)`.
    pub fn new(
        config: &ServeConfig,
        secret: &[u8; 32],
        previous: Option<&Tenants>,
    ) -> Result<Tenants, (String, qpf_engine::cache::CacheError)> {
        let mut all = Vec::new();
        for t in &config.tenants {
            let open = previous.and_then(|p| p.all.iter().find(|old| old.id == t.id)).map(|old| old.cache.clone());
            all.push(Arc::new(Tenant::new(t, &config.data, secret, open).map_err(|e| (t.id.clone(), e))?));
        }
        let tokens = all
            .iter()
            .flat_map(|tenant| tenant.config.tokens.iter().filter_map(|d| parse_digest(d)).map(|h| (h, tenant.clone())))
            .collect();
        let operators = config.operators.iter().filter_map(|d| parse_digest(d)).collect();
        Ok(Tenants { all, tokens, operators })
    }

    /// Whether a bearer token is an operator's (constant-time comparisons, no early exit).
    pub fn is_operator(&self, token: &str) -> bool {
        let presented = blake3::hash(token.as_bytes());
        self.operators.iter().fold(false, |found, d| found | (*d == presented))
    }

    /// The tenant a bearer token acts as. Every digest is compared (constant-time equality), with
    /// no early exit.
    pub fn authenticate(&self, token: &str) -> Option<Arc<Tenant>> {
        let presented = blake3::hash(token.as_bytes());
        let mut found = None;
        for (digest, tenant) in &self.tokens {
            if *digest == presented {
                found = Some(tenant.clone());
            }
        }
        found
    }

    /// Every tenant, in configuration order.
    pub fn all(&self) -> &[Arc<Tenant>] {
        &self.all
    }
}

/// Cuts an audit log back to its last whole line: a process killed in the middle of an append
/// leaves at most one partial line at the end, which would otherwise run into the next record.
///
/// # Errors
/// I/O errors other than a missing file.
pub fn repair_audit(path: &std::path::Path) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = match std::fs::OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    let mut end = len;
    let mut chunk = vec![0u8; 64 << 10];
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let n = usize::try_from(end - start).unwrap_or(chunk.len());
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut chunk[..n])?;
        if let Some(i) = chunk[..n].iter().rposition(|b| *b == b'\n') {
            let keep = start + i as u64 + 1;
            if keep < len {
                tracing::warn!("`{}`: dropping a partial last record ({} bytes)", path.display(), len - keep);
                file.set_len(keep)?;
            }
            return Ok(());
        }
        end = start;
    }
    if len > 0 {
        file.set_len(0)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_partial_last_audit_record_is_cut_and_whole_ones_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("audit.jsonl");
        std::fs::write(&path, "{\"a\":1}\n{\"b\":2}\n{\"c\":").unwrap();
        repair_audit(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"a\":1}\n{\"b\":2}\n");
        repair_audit(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"a\":1}\n{\"b\":2}\n");
        std::fs::write(&path, "no newline at all").unwrap();
        repair_audit(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
        repair_audit(&tmp.path().join("missing.jsonl")).unwrap();
    }
}
