//! The inference check: before a new model gets traffic, ask it to answer.
//!
//! The rollout calls an [`InferenceCheck`] against the new revision only
//! (tag routing in Knative mode): readiness first, then the sample request
//! from `pre_deployment_test_sample_input_path`, sent with the V1 or V2
//! (Open Inference) protocol — configured, or detected from the sample's
//! shape — a few times, requiring HTTP 200 and, when configured, an
//! expected output. The [`CheckReport`] carries what the PR comment shows.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use crate::error::CheckError;

/// The prediction protocol of a model server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// KServe V1: `GET /v1/models/{name}`, `POST /v1/models/{name}:predict` with `{"instances": …}`.
    V1,
    /// Open Inference Protocol (V2): `GET /v2/health/ready`, `GET /v2/models/{name}/ready`,
    /// `POST /v2/models/{name}/infer` with `{"inputs": [{name, shape, datatype, data}]}`.
    V2,
}

impl Protocol {
    /// `v1` or `v2`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::V1 => "v1",
            Protocol::V2 => "v2",
        }
    }
}

/// Where the model being checked answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckTarget {
    /// Base URL requests go to, e.g. `http://churn-model-predictor-latest.models.example.com`
    /// or a gateway address.
    pub base_url: String,
    /// `Host` header to send (when `base_url` is a gateway that routes by host), if any.
    pub host: Option<String>,
    /// The model name in the protocol paths (usually the InferenceService name).
    pub model_name: String,
}

/// What to send and what to require.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckSettings {
    /// The protocol; `None` detects it from the sample (`instances` → V1, `inputs` → V2).
    pub protocol: Option<Protocol>,
    /// The request body to send (the repository's sample file).
    pub sample: Value,
    /// Required output: the response body must contain this JSON (object keys recursively, arrays element-wise).
    pub expect: Option<Value>,
    /// How many prediction requests to send (at least 1); latency is reported over them.
    pub requests: u32,
    /// Limit for each request, and for waiting until the model reports ready.
    pub timeout: Duration,
}

/// What the check saw.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CheckReport {
    /// The protocol used.
    pub protocol: Protocol,
    /// How many prediction requests were sent (all answered 200).
    pub requests: u32,
    /// Latencies of the prediction requests, in milliseconds, in order.
    pub latencies_ms: Vec<f64>,
    /// A short rendering of the (first) response body.
    pub output: String,
}

/// Checks a model server before it gets traffic.
#[async_trait]
pub trait InferenceCheck: Send + Sync {
    /// Readiness, then `settings.requests` predictions; `Err` says which step failed and why.
    async fn check(&self, target: &CheckTarget, settings: &CheckSettings) -> Result<CheckReport, CheckError>;
}

/// How often readiness is asked again while the model is not ready.
const READY_POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Longest piece of a response body quoted in an error.
const MAX_BODY_IN_ERROR: usize = 300;
/// Longest [`CheckReport::output`].
const MAX_OUTPUT: usize = 200;
/// Relative tolerance when an expected number is compared with the answer.
const NUMBER_TOLERANCE: f64 = 1e-6;

/// The protocol a sample is written in: an object with an `instances` array is V1, an object with an `inputs`
/// array of V2 tensors (`name`, `shape`, `datatype`, `data`) is V2; anything else is a [`CheckError::Sample`].
pub fn detect_protocol(sample: &Value) -> Result<Protocol, CheckError> {
    const SHAPES: &str = "a V1 sample is {\"instances\": [...]}, a V2 sample is \
                          {\"inputs\": [{\"name\": ..., \"shape\": [...], \"datatype\": ..., \"data\": [...]}]}";
    let Some(object) = sample.as_object() else {
        return Err(CheckError::Sample(format!("the sample is {}, not a JSON object; {SHAPES}", json_kind(sample))));
    };
    match (object.get("instances"), object.get("inputs")) {
        (Some(_), Some(_)) => Err(CheckError::Sample(format!(
            "the sample has both `instances` and `inputs`, so its protocol is ambiguous; configure the protocol, or {SHAPES}"
        ))),
        (Some(Value::Array(_)), None) => Ok(Protocol::V1),
        (Some(other), None) => {
            Err(CheckError::Sample(format!("`instances` is {}, not an array; {SHAPES}", json_kind(other))))
        }
        (None, Some(Value::Array(inputs))) => {
            if inputs.is_empty() {
                return Err(CheckError::Sample(format!("`inputs` is empty; {SHAPES}")));
            }
            for (i, input) in inputs.iter().enumerate() {
                let missing: Vec<&str> =
                    ["name", "shape", "datatype", "data"].into_iter().filter(|key| input.get(key).is_none()).collect();
                if !input.is_object() || !missing.is_empty() {
                    let what = if input.is_object() {
                        format!("lacks {}", missing.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", "))
                    } else {
                        format!("is {}", json_kind(input))
                    };
                    return Err(CheckError::Sample(format!(
                        "`inputs[{i}]` {what}, so it is not a V2 tensor; {SHAPES}"
                    )));
                }
            }
            Ok(Protocol::V2)
        }
        (None, Some(other)) => {
            Err(CheckError::Sample(format!("`inputs` is {}, not an array; {SHAPES}", json_kind(other))))
        }
        (None, None) => Err(CheckError::Sample(format!("the sample has neither `instances` nor `inputs`; {SHAPES}"))),
    }
}

/// The [`InferenceCheck`] over HTTP (KServe V1 and Open Inference Protocol V2 REST).
#[derive(Debug, Clone)]
pub struct HttpInferenceCheck {
    http: reqwest::Client,
}

impl HttpInferenceCheck {
    /// Builds the HTTP client (rustls with the ring provider, no redirects). Nothing is sent until [`InferenceCheck::check`].
    pub fn new() -> Result<Self, CheckError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("kfops/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CheckError::Client(error_chain(&e)))?;
        Ok(HttpInferenceCheck { http })
    }

    fn request(&self, method: reqwest::Method, target: &CheckTarget, path: &str) -> reqwest::RequestBuilder {
        let url = format!("{}{path}", target.base_url.trim_end_matches('/'));
        let request = self.http.request(method, url);
        match &target.host {
            Some(host) => request.header(reqwest::header::HOST, host),
            None => request,
        }
    }

    /// One readiness probe: `Ok(())` when ready, `Err(why not)` otherwise.
    async fn probe(&self, target: &CheckTarget, path: &str, timeout: Duration, v1: bool) -> Result<(), String> {
        let response = self
            .request(reqwest::Method::GET, target, path)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| format!("GET {path} failed: {}", transport_message(&e)))?;
        let status = response.status();
        let body = read_capped(response).await.map_err(|e| match e {
            BodyError::Transport(e) => format!("GET {path} failed: {}", transport_message(&e)),
            BodyError::TooLarge => format!("GET {path} answered {status} with a body over {MAX_BODY_BYTES} bytes"),
        })?;
        if status != reqwest::StatusCode::OK {
            return Err(format!("GET {path} answered {}", status_and_body(status, &body)));
        }
        let parsed: Option<Value> = serde_json::from_str(&body).ok();
        let ready = parsed.as_ref().and_then(|v| v.get("ready"));
        let ok = if v1 {
            // V1 says readiness in the body: `{"name": …, "ready": true}`.
            ready == Some(&Value::Bool(true))
        } else {
            // V2 says it with the status; bodies may be empty (MLServer) or `{"ready": true}` (KServe).
            ready != Some(&Value::Bool(false))
        };
        if ok { Ok(()) } else { Err(format!("GET {path} answered {}", status_and_body(status, &body))) }
    }

    async fn wait_ready(&self, target: &CheckTarget, protocol: Protocol, timeout: Duration) -> Result<(), CheckError> {
        let name = &target.model_name;
        let paths: Vec<(String, bool)> = match protocol {
            Protocol::V1 => vec![(format!("/v1/models/{name}"), true)],
            Protocol::V2 => vec![("/v2/health/ready".to_owned(), false), (format!("/v2/models/{name}/ready"), false)],
        };
        let deadline = tokio::time::Instant::now() + timeout;
        for (path, v1) in &paths {
            loop {
                // Every probe may take the full limit, so one slow answer to the first probe is not a failure.
                match self.probe(target, path, timeout, *v1).await {
                    Ok(()) => break,
                    Err(why) => {
                        let now = tokio::time::Instant::now();
                        if now + READY_POLL_INTERVAL > deadline {
                            return Err(CheckError::NotReady(format!(
                                "{why} (still not ready after {} ms)",
                                timeout.as_millis()
                            )));
                        }
                        tokio::time::sleep(READY_POLL_INTERVAL).await;
                    }
                }
            }
        }
        Ok(())
    }

    async fn predict(
        &self,
        target: &CheckTarget,
        protocol: Protocol,
        settings: &CheckSettings,
        attempt: u32,
    ) -> Result<Value, CheckError> {
        let name = &target.model_name;
        let path = match protocol {
            Protocol::V1 => format!("/v1/models/{name}:predict"),
            Protocol::V2 => format!("/v2/models/{name}/infer"),
        };
        let failed = |message: String| CheckError::Predict { attempt, message };
        let transport = |e: reqwest::Error| {
            if e.is_timeout() {
                CheckError::Timeout {
                    what: format!("prediction request {attempt} (POST {path})"),
                    limit: settings.timeout,
                }
            } else {
                failed(format!("POST {path}: {}", transport_message(&e)))
            }
        };
        let response = self
            .request(reqwest::Method::POST, target, &path)
            .timeout(settings.timeout)
            .json(&settings.sample)
            .send()
            .await
            .map_err(&transport)?;
        let status = response.status();
        let body = read_capped(response).await.map_err(|e| match e {
            BodyError::Transport(e) => transport(e),
            BodyError::TooLarge => failed(format!(
                "POST {path} answered {status} with a body over {MAX_BODY_BYTES} bytes; kfops reads at most that much"
            )),
        })?;
        if status != reqwest::StatusCode::OK {
            return Err(failed(format!("POST {path} answered {}", status_and_body(status, &body))));
        }
        let value: Value = serde_json::from_str(&body).map_err(|e| {
            failed(format!("POST {path} answered 200 but the body is not JSON ({e}): {}", quote_body(&body)))
        })?;
        match protocol {
            Protocol::V1 => match value.get("predictions") {
                Some(Value::Array(_)) => {}
                _ => {
                    return Err(failed(format!(
                        "the V1 answer has no `predictions` array: {}",
                        truncate(&value.to_string(), MAX_BODY_IN_ERROR)
                    )));
                }
            },
            Protocol::V2 => match value.get("outputs") {
                Some(Value::Array(outputs)) if !outputs.is_empty() => {}
                _ => {
                    return Err(failed(format!(
                        "the V2 answer has no `outputs`: {}",
                        truncate(&value.to_string(), MAX_BODY_IN_ERROR)
                    )));
                }
            },
        }
        Ok(value)
    }
}

#[async_trait]
impl InferenceCheck for HttpInferenceCheck {
    async fn check(&self, target: &CheckTarget, settings: &CheckSettings) -> Result<CheckReport, CheckError> {
        let protocol = match settings.protocol {
            Some(p) => p,
            None => detect_protocol(&settings.sample)?,
        };
        self.wait_ready(target, protocol, settings.timeout).await?;
        let requests = settings.requests.max(1);
        let mut latencies_ms = Vec::with_capacity(requests as usize);
        let mut first = None;
        for attempt in 1..=requests {
            let started = std::time::Instant::now();
            let answer = self.predict(target, protocol, settings, attempt).await?;
            latencies_ms.push(started.elapsed().as_secs_f64() * 1000.0);
            if let Some(expect) = &settings.expect {
                match_subset(expect, &answer, "$")?;
            }
            if first.is_none() {
                first = Some(answer);
            }
        }
        let output = first.map(|answer| render_output(protocol, &answer)).unwrap_or_default();
        Ok(CheckReport { protocol, requests, latencies_ms, output })
    }
}

impl CheckReport {
    /// Human lines for the PR comment: protocol and request count, latency (p50, max), the output.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "protocol {}, {} request{} answered 200",
            self.protocol.as_str(),
            self.requests,
            if self.requests == 1 { "" } else { "s" }
        )];
        let mut sorted = self.latencies_ms.clone();
        sorted.sort_by(f64::total_cmp);
        if let Some(max) = sorted.last() {
            // Nearest-rank median.
            let p50 = sorted[(sorted.len() - 1) / 2];
            lines.push(format!("latency p50 {p50:.1} ms, max {max:.1} ms"));
        }
        lines.push(format!("output: {}", self.output));
        lines
    }
}

/// Requires `actual` to contain `expected`: object keys recursively, arrays element-wise with the same length,
/// numbers equal within a relative tolerance, everything else equal.
fn match_subset(expected: &Value, actual: &Value, path: &str) -> Result<(), CheckError> {
    let differ = || CheckError::Unexpected {
        path: path.to_owned(),
        expected: truncate(&expected.to_string(), MAX_BODY_IN_ERROR),
        actual: truncate(&actual.to_string(), MAX_BODY_IN_ERROR),
    };
    match (expected, actual) {
        (Value::Object(want), Value::Object(have)) => {
            for (key, want) in want {
                let at = format!("{path}.{key}");
                match have.get(key) {
                    Some(have) => match_subset(want, have, &at)?,
                    None => {
                        return Err(CheckError::Unexpected {
                            path: at,
                            expected: truncate(&want.to_string(), MAX_BODY_IN_ERROR),
                            actual: "nothing (no such key)".to_owned(),
                        });
                    }
                }
            }
            Ok(())
        }
        (Value::Array(want), Value::Array(have)) => {
            if want.len() != have.len() {
                return Err(CheckError::Unexpected {
                    path: path.to_owned(),
                    expected: format!(
                        "{} elements: {}",
                        want.len(),
                        truncate(&expected.to_string(), MAX_BODY_IN_ERROR)
                    ),
                    actual: format!("{} elements: {}", have.len(), truncate(&actual.to_string(), MAX_BODY_IN_ERROR)),
                });
            }
            for (i, (want, have)) in want.iter().zip(have).enumerate() {
                match_subset(want, have, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        (Value::Number(want), Value::Number(have)) => {
            let equal = match (want.as_f64(), have.as_f64()) {
                (Some(a), Some(b)) => a == b || (a - b).abs() <= NUMBER_TOLERANCE * a.abs().max(b.abs()),
                _ => want == have,
            };
            if equal { Ok(()) } else { Err(differ()) }
        }
        _ if expected == actual => Ok(()),
        _ => Err(differ()),
    }
}

/// The first answer's predictions (V1) or outputs as `name=data` (V2), compact and at most [`MAX_OUTPUT`] characters.
fn render_output(protocol: Protocol, answer: &Value) -> String {
    let text = match protocol {
        Protocol::V1 => answer.get("predictions").map(Value::to_string).unwrap_or_default(),
        Protocol::V2 => answer
            .get("outputs")
            .and_then(Value::as_array)
            .map(|outputs| {
                outputs
                    .iter()
                    .map(|o| {
                        let name = o.get("name").and_then(Value::as_str).unwrap_or("?");
                        let data = o.get("data").map(Value::to_string).unwrap_or_else(|| "null".to_owned());
                        format!("{name}={data}")
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default(),
    };
    truncate(&text, MAX_OUTPUT)
}

/// The most of a response body the check reads (1 MiB); a longer answer fails the check.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Why a response body could not be read.
enum BodyError {
    Transport(reqwest::Error),
    TooLarge,
}

/// Read `response`'s body as (lossy) UTF-8, at most [`MAX_BODY_BYTES`]; stops reading once the limit is passed.
async fn read_capped(mut response: reqwest::Response) -> Result<String, BodyError> {
    if response.content_length().is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(BodyError::TooLarge);
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Transport)? {
        if bytes.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(BodyError::TooLarge);
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn status_and_body(status: reqwest::StatusCode, body: &str) -> String {
    format!("HTTP {status}: {}", quote_body(body))
}

fn quote_body(body: &str) -> String {
    let body = body.trim();
    if body.is_empty() { "(empty body)".to_owned() } else { truncate(body, MAX_BODY_IN_ERROR) }
}

/// At most `max` characters of `text`, with `…` when cut.
fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// What a transport failure was, without reqwest's full URL.
fn transport_message(error: &reqwest::Error) -> String {
    let what = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connecting failed"
    } else if error.is_body() || error.is_decode() {
        "reading the answer failed"
    } else {
        "sending the request failed"
    };
    match std::error::Error::source(error) {
        Some(source) => format!("{what}: {}", error_chain(source)),
        None => what.to_owned(),
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let next = e.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    text
}
