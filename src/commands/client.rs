//! The HTTP client the scripting commands share: base URL, API key, JSON errors turned into messages.

use anyhow::{Context, bail};
use reqwest::{Client, RequestBuilder, Response};

use crate::cli::ServerArgs;

#[derive(Clone)]
pub struct Api {
    http: Client,
    base: String,
    api_key: Option<String>,
}

impl Api {
    pub fn new(server: &ServerArgs) -> anyhow::Result<Self> {
        let http = Client::builder().pool_max_idle_per_host(4096).build().context("cannot build the HTTP client")?;
        Ok(Self { http, base: server.url.trim_end_matches('/').to_owned(), api_key: server.api_key.clone() })
    }

    pub fn get(&self, path: &str) -> RequestBuilder {
        self.authorize(self.http.get(format!("{}{path}", self.base)))
    }

    pub fn post(&self, path: &str) -> RequestBuilder {
        self.authorize(self.http.post(format!("{}{path}", self.base)))
    }

    pub async fn http_delete(&self, path: &str) -> anyhow::Result<Response> {
        send(self.authorize(self.http.delete(format!("{}{path}", self.base)))).await
    }

    fn authorize(&self, request: RequestBuilder) -> RequestBuilder {
        match &self.api_key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }
}

/// Sends a request and fails with the server's error message unless the answer is a success.
pub async fn send(request: RequestBuilder) -> anyhow::Result<Response> {
    let response = request.send().await.context("the server did not answer")?;
    if response.status().is_success() {
        return Ok(response);
    }
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    match body["error"]["message"].as_str() {
        Some(message) => bail!("{status}: {message}"),
        None => bail!("{status}"),
    }
}
