//! The running server as the command line sees it: asked over its monitoring endpoint, by
//! `check --diff` (`/status`, `/lookup`) and `mirrordns lookup` (`/lookup`). The documents
//! are read into the types of [`crate::schema`].

use std::net::SocketAddr;

/// The running server, asked over its monitoring endpoint: by `check --diff` and by
/// `lookup`.
pub struct Running {
    client: reqwest::Client,
    /// `http://ADDR`, as shown to operators.
    pub base: String,
}

/// Why the running server could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    /// Nothing answered at the address (refused, unreachable, timed out): no server there.
    #[error("{url}: {detail}")]
    Unreachable { url: String, detail: String },
    /// A server answered with an error status; its body says why.
    #[error("{url}: HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    /// Something answered, but not with the document asked for.
    #[error("{url}: {detail}")]
    Invalid { url: String, detail: String },
    /// No HTTP client to ask with (its TLS set-up failed): nothing was sent.
    #[error("{0}")]
    Client(reqwest::Error),
}

impl Running {
    /// `timeout` bounds each whole request; connecting gets at most 2 s of it, so that an
    /// address where nothing listens (or a dropped packet) is found out quickly.
    pub fn new(addr: SocketAddr, timeout: std::time::Duration) -> Result<Running, AskError> {
        crate::health::http::install_crypto();
        let client = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(timeout.min(std::time::Duration::from_secs(2)))
            .timeout(timeout)
            .build()
            .map_err(AskError::Client)?;
        Ok(Running {
            client,
            base: format!("http://{addr}"),
        })
    }

    /// GET `path` with `query` (encoded here), parsed as `T`.
    pub async fn get<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<T, AskError> {
        let invalid = |url: &str, detail: String| AskError::Invalid {
            url: url.to_string(),
            detail,
        };
        let url = reqwest::Url::parse_with_params(&format!("{}{path}", self.base), query)
            .map_err(|e| invalid(&self.base, e.to_string()))?;
        let shown = url.to_string();
        let r = self.client.get(url).send().await.map_err(|e| {
            // The innermost cause ("Connection refused (os error 111)") is what an operator
            // acts on; the outer layers only repeat the URL.
            let mut detail = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                detail = s.to_string();
                src = s.source();
            }
            if e.is_connect() || e.is_timeout() {
                AskError::Unreachable {
                    url: shown.clone(),
                    detail,
                }
            } else {
                invalid(&shown, detail)
            }
        })?;
        let status = r.status();
        let body = r
            .bytes()
            .await
            .map_err(|e| invalid(&shown, e.to_string()))?;
        if !status.is_success() {
            return Err(AskError::Status {
                url: shown,
                status: status.as_u16(),
                body: String::from_utf8_lossy(&body).trim_end().to_string(),
            });
        }
        serde_json::from_slice(&body).map_err(|e| invalid(&shown, e.to_string()))
    }
}
