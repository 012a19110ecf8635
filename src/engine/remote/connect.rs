//! Which remote cache a process uses, and the OpenDAL operator that reaches it.
//!
//! The environment wins over `qairt.toml`: `QAIRT_REMOTE_CACHE` (a URL, or `off`) replaces
//! `[cache] remote`, `QAIRT_REMOTE_CACHE_MODE` replaces `[cache] mode`, and credentials come
//! only from the environment (`QAIRT_REMOTE_CACHE_USERNAME`/`_PASSWORD`/`_TOKEN`, AWS's
//! variables for S3). `QAIRT_REMOTE_CACHE_TIMEOUT` (seconds, default 10) bounds every request.

use std::time::Duration;

use opendal::Operator;
use opendal::layers::{RetryLayer, TimeoutLayer};

use crate::diag::Diag;
use crate::project::remote::{RemoteBackend, RemoteMode, RemoteSpec, parse_remote_url};
use crate::project::{CacheConfig, ProjectConfig};

pub const URL_VAR: &str = "QAIRT_REMOTE_CACHE";
pub const MODE_VAR: &str = "QAIRT_REMOTE_CACHE_MODE";
pub const TIMEOUT_VAR: &str = "QAIRT_REMOTE_CACHE_TIMEOUT";
const USERNAME_VAR: &str = "QAIRT_REMOTE_CACHE_USERNAME";
const PASSWORD_VAR: &str = "QAIRT_REMOTE_CACHE_PASSWORD";
const TOKEN_VAR: &str = "QAIRT_REMOTE_CACHE_TOKEN";

/// Everything needed to open the remote cache.
#[derive(Clone, Debug)]
pub struct RemoteSettings {
    pub spec: RemoteSpec,
    pub mode: RemoteMode,
    /// Per request (and per chunk of a transfer); each is retried twice on a temporary error.
    pub timeout: Duration,
}

/// The remote cache this process should use for `config`, if any: the environment's URL or
/// the file's, with the environment's mode or the file's. An environment variable that does
/// not parse is an error (the build would otherwise silently run without the cache CI set up).
pub fn settings(config: &ProjectConfig) -> Result<Option<RemoteSettings>, Diag> {
    settings_from(&config.cache, |name| std::env::var(name).ok())
}

fn settings_from(cache: &CacheConfig, env: impl Fn(&str) -> Option<String>) -> Result<Option<RemoteSettings>, Diag> {
    let bad_env = |var: &str, message: String, help: String| {
        Diag::error("qairt::cache::remote_config", format!("{var}: {message}")).with_help(help)
    };
    let spec = match env(URL_VAR).map(|v| v.trim().to_string()) {
        Some(off) if off.is_empty() || off == "off" => None,
        Some(url) => Some(parse_remote_url(&url, false).map_err(|p| bad_env(URL_VAR, p.message, p.help))?),
        None => cache.remote.clone(),
    };
    let Some(mut spec) = spec else { return Ok(None) };
    let mode = match env(MODE_VAR) {
        Some(mode) => RemoteMode::parse(&mode).map_err(|m| {
            bad_env(MODE_VAR, m, "set it to \"read\" on runners whose results others should not use".into())
        })?,
        None => cache.mode.unwrap_or(RemoteMode::ReadWrite),
    };
    let timeout = match env(TIMEOUT_VAR) {
        None => Duration::from_secs(10),
        Some(text) => text
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s > 0.0 && *s <= 3600.0)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| {
                bad_env(TIMEOUT_VAR, format!("\"{text}\" is not a number of seconds"), "e.g. 10 or 2.5".into())
            })?,
    };
    if let Some(user) = env(USERNAME_VAR) {
        spec.username = Some(user);
    }
    if let Some(password) = env(PASSWORD_VAR) {
        spec.password = Some(password);
    }
    Ok(Some(RemoteSettings { spec, mode, timeout }))
}

/// The operator for `settings`, with per-request timeouts and two bounded retries. Nothing is
/// contacted here: a server that is down is found by the first request.
pub fn operator(settings: &RemoteSettings) -> Result<Operator, Diag> {
    install_http_transport(settings.timeout);
    let spec = &settings.spec;
    let failed = |e: opendal::Error| {
        Diag::error("qairt::cache::remote_config", format!("cannot set up the remote cache {}: {e}", spec.shown))
    };
    let operator = match &spec.backend {
        RemoteBackend::Redis { endpoint, db } => {
            let mut builder = opendal_service_redis::Redis::default().endpoint(endpoint).db(*db).root("/qairt");
            if let Some(user) = &spec.username {
                builder = builder.username(user);
            }
            if let Some(password) = &spec.password {
                builder = builder.password(password);
            }
            Operator::new(builder).map_err(failed)?
        }
        RemoteBackend::Webdav { endpoint, root } => {
            let mut builder = opendal::services::Webdav::default().endpoint(endpoint).root(root);
            if let Some(user) = &spec.username {
                builder = builder.username(user);
            }
            if let Some(password) = &spec.password {
                builder = builder.password(password);
            }
            if let Ok(token) = std::env::var(TOKEN_VAR) {
                builder = builder.token(&token);
            }
            Operator::new(builder).map_err(failed)?
        }
        RemoteBackend::S3 { bucket, root, endpoint, region } => {
            let region = region
                .clone()
                .or_else(|| std::env::var("AWS_REGION").ok())
                .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
                .unwrap_or_else(|| "us-east-1".to_string());
            // No EC2 metadata probe: off EC2 it costs a timeout per build.
            let mut builder =
                opendal::services::S3::default().bucket(bucket).root(root).region(&region).disable_ec2_metadata();
            if let Some(endpoint) = endpoint {
                builder = builder.endpoint(endpoint);
            }
            // AWS's own variables, read here so that the environment is the one place keys
            // come from (OpenDAL would also look in ~/.aws).
            if let (Ok(id), Ok(secret)) = (std::env::var("AWS_ACCESS_KEY_ID"), std::env::var("AWS_SECRET_ACCESS_KEY")) {
                builder = builder.access_key_id(&id).secret_access_key(&secret);
                if let Ok(token) = std::env::var("AWS_SESSION_TOKEN") {
                    builder = builder.session_token(&token);
                }
            }
            Operator::new(builder).map_err(failed)?
        }
    };
    Ok(operator.layer(TimeoutLayer::new().with_timeout(settings.timeout).with_io_timeout(settings.timeout)).layer(
        RetryLayer::new()
            .with_max_times(2)
            .with_min_delay(Duration::from_millis(50))
            .with_max_delay(Duration::from_millis(500)),
    ))
}

/// The address to try a TCP connection to before the first request: Redis's client retries
/// a refused connection with growing pauses for about half a minute, which a build should not
/// wait out. HTTP clients fail at once.
pub fn probe_address(spec: &RemoteSpec) -> Option<String> {
    match &spec.backend {
        RemoteBackend::Redis { endpoint, .. } => endpoint.strip_prefix("tcp://").map(str::to_string),
        _ => None,
    }
}

/// OpenDAL's HTTP services (WebDAV, S3) go through one process-wide reqwest client, with
/// rustls on *ring* (a pure-Rust build; reqwest's default provider compiles a C library).
fn install_http_transport(timeout: Duration) {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        // Deprecated for lacking post-quantum key exchange, which aws-lc-rs has; a build cache
        // does not weigh that against a C library in every build of qairt.
        #[allow(deprecated)]
        let _ = rustls::crypto::ring::default_provider().install_default();
        // TCP_NODELAY: without it (reqwest 0.13's default) Nagle's algorithm holds a request's
        // second write until the server's delayed ACK, ~20-40 ms per request; a second runner's
        // build, some fifty requests, took 4.7x a cold build on loopback WebDAV instead of less.
        let client =
            reqwest::Client::builder().tcp_nodelay(true).connect_timeout(timeout).read_timeout(timeout).build();
        if let Ok(client) = client {
            opendal::HttpTransporter::install_default(opendal_http_transport_reqwest::ReqwestTransport::new(client));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| map.get(name).cloned()
    }

    fn file_config(url: &str) -> CacheConfig {
        CacheConfig { remote: Some(parse_remote_url(url, true).unwrap()), mode: Some(RemoteMode::ReadWrite) }
    }

    #[test]
    fn the_environment_wins_over_the_file() {
        let file = file_config("redis://10.0.0.1:6379");
        let none = settings_from(&CacheConfig::default(), env(&[])).unwrap();
        assert!(none.is_none());
        let from_file = settings_from(&file, env(&[])).unwrap().unwrap();
        assert_eq!(from_file.spec.shown, "redis://10.0.0.1:6379");
        assert_eq!((from_file.mode, from_file.timeout), (RemoteMode::ReadWrite, Duration::from_secs(10)));
        let from_env = settings_from(
            &file,
            env(&[(URL_VAR, "webdav+http://127.0.0.1:8080/c"), (MODE_VAR, "read"), (TIMEOUT_VAR, "2.5")]),
        )
        .unwrap()
        .unwrap();
        assert!(matches!(from_env.spec.backend, RemoteBackend::Webdav { .. }));
        assert_eq!((from_env.mode, from_env.timeout), (RemoteMode::Read, Duration::from_millis(2500)));
        assert!(settings_from(&file, env(&[(URL_VAR, "off")])).unwrap().is_none(), "off turns the file's remote off");
    }

    #[test]
    fn credentials_come_from_the_environment() {
        let s = settings_from(
            &file_config("redis://10.0.0.1:6379"),
            env(&[(USERNAME_VAR, "ci"), (PASSWORD_VAR, "hunter2")]),
        )
        .unwrap()
        .unwrap();
        assert_eq!((s.spec.username.as_deref(), s.spec.password.as_deref()), (Some("ci"), Some("hunter2")));
        assert!(!s.spec.shown.contains("hunter2"));
    }

    #[test]
    fn bad_environment_values_name_the_variable() {
        for (pairs, says) in [
            (vec![(URL_VAR, "ftp://x")], URL_VAR),
            (vec![(URL_VAR, "redis://x"), (MODE_VAR, "sometimes")], MODE_VAR),
            (vec![(URL_VAR, "redis://x"), (TIMEOUT_VAR, "-1")], TIMEOUT_VAR),
        ] {
            let err = settings_from(&CacheConfig::default(), env(&pairs)).unwrap_err();
            assert!(err.message.starts_with(says), "{}", err.message);
            assert!(err.help.is_some());
        }
    }
}
