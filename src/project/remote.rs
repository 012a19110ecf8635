//! The remote cache's address: `QAIRT_REMOTE_CACHE` or `[cache] remote`, parsed into the back
//! end and its settings. Pure text -> value; the engine opens the connection.
//!
//! Accepted forms:
//! - `redis://host[:port][/db]` (a Redis server; keys under `qairt/`),
//! - `webdav+http://host[:port]/path` and `webdav+https://…` (an HTTP server with WebDAV, such
//!   as nginx with its dav modules),
//! - `s3://bucket[/prefix][?endpoint=http://host:port&region=…]` (S3 or any S3-compatible
//!   server; path-style requests, so a local server needs no DNS names per bucket).
//!
//! **Invariant:** credentials come only from the environment. A URL written in `qairt.toml`
//! (a file that is committed and shared) may not carry a user name or password; the
//! environment's URL may, and the `QAIRT_REMOTE_CACHE_USERNAME`/`_PASSWORD` variables and
//! AWS's own (`AWS_ACCESS_KEY_ID`, …) are read by the engine. `shown` never holds a secret.

/// Where the remote cache lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RemoteBackend {
    Redis { endpoint: String, db: i64 },
    Webdav { endpoint: String, root: String },
    S3 { bucket: String, root: String, endpoint: Option<String>, region: Option<String> },
}

/// A parsed remote cache address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteSpec {
    pub backend: RemoteBackend,
    /// The URL without credentials, for messages and `cache stats`.
    pub shown: String,
    /// User name and password written in the URL itself (allowed only from the environment).
    pub username: Option<String>,
    pub password: Option<String>,
}

/// Whether this machine may write to the remote cache (`QAIRT_REMOTE_CACHE_MODE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoteMode {
    /// Read-through and write-through (the default).
    ReadWrite,
    /// Read-through only, for runners whose results should not be trusted by others.
    Read,
}

impl RemoteMode {
    pub fn parse(text: &str) -> Result<RemoteMode, String> {
        match text.trim() {
            "read-write" | "rw" | "" => Ok(RemoteMode::ReadWrite),
            "read" | "read-only" | "ro" => Ok(RemoteMode::Read),
            other => Err(format!("unknown remote cache mode \"{other}\" (expected \"read\" or \"read-write\")")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            RemoteMode::ReadWrite => "read-write",
            RemoteMode::Read => "read",
        }
    }
}

/// A mistake in a remote cache URL: what is wrong, and what to write instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UrlProblem {
    pub message: String,
    pub help: String,
}

fn problem(message: impl Into<String>, help: impl Into<String>) -> UrlProblem {
    UrlProblem { message: message.into(), help: help.into() }
}

const FORMS: &str = "expected redis://host:port, webdav+http://host:port/path or s3://bucket/prefix?endpoint=…";

/// Parses a remote cache URL. `from_file` refuses credentials in it (they belong in the
/// environment, not in a committed `qairt.toml`).
pub fn parse_remote_url(text: &str, from_file: bool) -> Result<RemoteSpec, UrlProblem> {
    let text = text.trim();
    let url = url::Url::parse(text).map_err(|e| problem(format!("\"{text}\" is not a URL ({e})"), FORMS))?;
    let (username, password) =
        (Some(url.username()).filter(|u| !u.is_empty()).map(percent_decoded), url.password().map(percent_decoded));
    if from_file && (username.is_some() || password.is_some()) {
        return Err(problem(
            "the remote cache URL in qairt.toml carries credentials",
            "qairt.toml is shared: remove the user name and password from the URL and set \
             QAIRT_REMOTE_CACHE_USERNAME / QAIRT_REMOTE_CACHE_PASSWORD (or AWS_ACCESS_KEY_ID / \
             AWS_SECRET_ACCESS_KEY for S3) in the environment",
        ));
    }
    let host = || -> Result<String, UrlProblem> {
        url.host_str()
            .filter(|h| !h.is_empty())
            .map(str::to_string)
            .ok_or_else(|| problem(format!("\"{text}\" names no host"), FORMS))
    };
    let host_port = |default: u16| -> Result<String, UrlProblem> {
        let host = host()?;
        let host = if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host };
        Ok(format!("{host}:{}", url.port().unwrap_or(default)))
    };
    let path = url.path().trim_matches('/').to_string();
    let backend = match url.scheme() {
        "redis" => {
            let db = if path.is_empty() {
                0
            } else {
                path.parse::<i64>().ok().filter(|db| *db >= 0).ok_or_else(|| {
                    problem(
                        format!("\"/{path}\" is not a Redis database number"),
                        "write redis://host:port/N, N a number",
                    )
                })?
            };
            RemoteBackend::Redis { endpoint: format!("tcp://{}", host_port(6379)?), db }
        }
        "rediss" => {
            return Err(problem(
                "Redis over TLS (rediss://) is not supported",
                "reach the server through a TLS tunnel and use redis://, or use webdav+https:// or s3:// with an https endpoint",
            ));
        }
        "webdav+http" | "webdav+https" => {
            let scheme = url.scheme().trim_start_matches("webdav+");
            let default = if scheme == "https" { 443 } else { 80 };
            RemoteBackend::Webdav { endpoint: format!("{scheme}://{}", host_port(default)?), root: format!("/{path}") }
        }
        "s3" => {
            let bucket = host()?;
            let mut endpoint = None;
            let mut region = None;
            for (key, value) in url.query_pairs() {
                match key.as_ref() {
                    "endpoint" => endpoint = Some(value.into_owned()),
                    "region" => region = Some(value.into_owned()),
                    other => {
                        return Err(problem(
                            format!("unknown S3 setting \"{other}\" in the remote cache URL"),
                            "the query may set endpoint=http://host:port and region=NAME",
                        ));
                    }
                }
            }
            if let Some(e) = &endpoint
                && !(e.starts_with("http://") || e.starts_with("https://"))
            {
                return Err(problem(
                    format!("the S3 endpoint \"{e}\" is not an http(s) URL"),
                    "write endpoint=http://host:port",
                ));
            }
            RemoteBackend::S3 { bucket, root: format!("/{path}"), endpoint, region }
        }
        other => return Err(problem(format!("unknown remote cache scheme \"{other}://\""), FORMS)),
    };
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    Ok(RemoteSpec { backend, shown: shown.to_string(), username, password })
}

fn percent_decoded(text: &str) -> String {
    url::form_urlencoded::parse(format!("x={text}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_back_end_is_read_with_its_defaults() {
        let redis = parse_remote_url("redis://127.0.0.1:6380/2", true).unwrap();
        assert_eq!(redis.backend, RemoteBackend::Redis { endpoint: "tcp://127.0.0.1:6380".into(), db: 2 });
        let redis = parse_remote_url("redis://cache.local", true).unwrap();
        assert_eq!(redis.backend, RemoteBackend::Redis { endpoint: "tcp://cache.local:6379".into(), db: 0 });
        let dav = parse_remote_url("webdav+http://127.0.0.1:8080/cache/qairt/", true).unwrap();
        assert_eq!(
            dav.backend,
            RemoteBackend::Webdav { endpoint: "http://127.0.0.1:8080".into(), root: "/cache/qairt".into() }
        );
        let dav = parse_remote_url("webdav+https://dav.example.com", true).unwrap();
        assert_eq!(
            dav.backend,
            RemoteBackend::Webdav { endpoint: "https://dav.example.com:443".into(), root: "/".into() }
        );
        let s3 =
            parse_remote_url("s3://models/ci/cache?endpoint=http://127.0.0.1:9000&region=eu-west-1", true).unwrap();
        assert_eq!(
            s3.backend,
            RemoteBackend::S3 {
                bucket: "models".into(),
                root: "/ci/cache".into(),
                endpoint: Some("http://127.0.0.1:9000".into()),
                region: Some("eu-west-1".into()),
            }
        );
    }

    #[test]
    fn credentials_are_taken_from_the_environment_only() {
        let env = parse_remote_url("redis://ci:s%40cret@10.0.0.5:6379", false).unwrap();
        assert_eq!((env.username.as_deref(), env.password.as_deref()), (Some("ci"), Some("s@cret")));
        assert!(!env.shown.contains("cret") && !env.shown.contains("ci@"), "{}", env.shown);
        let file = parse_remote_url("redis://ci:secret@10.0.0.5:6379", true).unwrap_err();
        assert!(file.message.contains("credentials"), "{file:?}");
        assert!(file.help.contains("QAIRT_REMOTE_CACHE_PASSWORD"), "{file:?}");
    }

    #[test]
    fn mistakes_say_what_was_expected() {
        for (url, says) in [
            ("ftp://host/x", "unknown remote cache scheme"),
            ("not a url", "is not a URL"),
            ("redis://host/abc", "not a Redis database number"),
            ("rediss://host", "not supported"),
            ("s3://bucket?endpont=http://x", "unknown S3 setting \"endpont\""),
            ("s3://bucket?endpoint=127.0.0.1:9000", "not an http(s) URL"),
        ] {
            let err = parse_remote_url(url, true).unwrap_err();
            assert!(err.message.contains(says), "{url}: {err:?}");
            assert!(!err.help.is_empty());
        }
    }

    #[test]
    fn modes_parse_and_unknown_ones_are_refused() {
        assert_eq!(RemoteMode::parse("read").unwrap(), RemoteMode::Read);
        assert_eq!(RemoteMode::parse("read-write").unwrap(), RemoteMode::ReadWrite);
        assert!(RemoteMode::parse("write").unwrap_err().contains("expected \"read\" or \"read-write\""));
    }
}
