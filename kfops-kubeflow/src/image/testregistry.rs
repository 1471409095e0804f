//! A container registry for tests that follows the OCI distribution spec for
//! manifest lookups, with the token-auth challenge real registries use.
//!
//! `HEAD|GET /v2/<name>/manifests/<reference>` answers 200 (with
//! `Docker-Content-Digest`) for known manifests and 404 with an OCI error body
//! otherwise; with token auth on, requests without a valid bearer token get 401
//! and `WWW-Authenticate: Bearer realm="<url>/token",service="kfops-test-registry",scope="repository:<name>:pull"`,
//! and `GET /token` hands out tokens (checking basic credentials when configured).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// How the test registry authenticates.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RegistryAuth {
    /// Anonymous access.
    #[default]
    None,
    /// Token auth; `credentials` (`user:password`) are required by the token endpoint when set.
    Token {
        /// Required basic credentials for `/token`, if any.
        credentials: Option<String>,
    },
}

#[derive(Debug, Default)]
struct Inner {
    manifests: BTreeSet<(String, String)>,
    auth: RegistryAuth,
    token: String,
    base: String,
    requests: Vec<String>,
}

/// A running test registry on 127.0.0.1 (its own thread and runtime).
#[derive(Debug)]
pub struct TestRegistry {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl TestRegistry {
    /// Start a registry with `auth`.
    pub fn start(auth: RegistryAuth) -> std::io::Result<TestRegistry> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let inner = Arc::new(Mutex::new(Inner {
            auth,
            token: format!("tok-{}", addr.port()),
            base: format!("http://{addr}"),
            ..Inner::default()
        }));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let state = inner.clone();
        std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
                let app = Router::new().fallback(handle).with_state(state);
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = rx.await;
                    })
                    .await;
            });
        });
        Ok(TestRegistry { addr, inner, _shutdown: tx })
    }

    /// `host:port`, for image references.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Make `name:reference` exist.
    pub fn add_manifest(&self, name: &str, reference: &str) {
        if let Ok(mut i) = self.inner.lock() {
            i.manifests.insert((name.to_owned(), reference.to_owned()));
        }
    }

    /// Every request as `METHOD path`, in order.
    pub fn requests(&self) -> Vec<String> {
        self.inner.lock().map(|i| i.requests.clone()).unwrap_or_default()
    }
}

async fn handle(State(inner): State<Arc<Mutex<Inner>>>, request: Request) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or_default().to_owned();
    let headers = request.headers().clone();
    let Ok(mut state) = inner.lock() else { return StatusCode::INTERNAL_SERVER_ERROR.into_response() };
    state.requests.push(format!("{method} {path}"));
    if path == "/token" {
        return token(&state, &headers, &query);
    }
    let Some(rest) = path.strip_prefix("/v2/") else { return StatusCode::NOT_FOUND.into_response() };
    let Some((name, reference)) = rest.rsplit_once("/manifests/") else {
        return if rest.is_empty() { StatusCode::OK.into_response() } else { StatusCode::NOT_FOUND.into_response() };
    };
    if method != Method::HEAD && method != Method::GET {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    if let RegistryAuth::Token { .. } = state.auth {
        let expected = format!("Bearer {}", state.token);
        if headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
            let challenge = format!(
                "Bearer realm=\"{}/token\",service=\"kfops-test-registry\",scope=\"repository:{name}:pull\"",
                state.base
            );
            let mut response =
                (StatusCode::UNAUTHORIZED, oci_error("UNAUTHORIZED", "authentication required")).into_response();
            if let Ok(v) = HeaderValue::from_str(&challenge) {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
            return response;
        }
    }
    if state.manifests.contains(&(name.to_owned(), reference.to_owned())) {
        let mut response = StatusCode::OK.into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/vnd.oci.image.manifest.v1+json"));
        response.headers_mut().insert(
            "docker-content-digest",
            HeaderValue::from_static("sha256:0000000000000000000000000000000000000000000000000000000000000000"),
        );
        response
    } else {
        (StatusCode::NOT_FOUND, oci_error("MANIFEST_UNKNOWN", "manifest unknown")).into_response()
    }
}

fn token(state: &Inner, headers: &HeaderMap, query: &str) -> Response {
    let RegistryAuth::Token { credentials } = &state.auth else { return StatusCode::NOT_FOUND.into_response() };
    if !query.contains("service=kfops-test-registry") {
        return (StatusCode::BAD_REQUEST, "missing service").into_response();
    }
    if let Some(creds) = credentials {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .map(str::to_owned);
        let expected = super::registry::base64(creds.as_bytes());
        if given.as_deref() != Some(expected.as_str()) {
            return (StatusCode::UNAUTHORIZED, oci_error("UNAUTHORIZED", "bad credentials")).into_response();
        }
    }
    axum::Json(serde_json::json!({"token": state.token, "access_token": state.token, "expires_in": 300}))
        .into_response()
}

fn oci_error(code: &str, message: &str) -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({"errors": [{"code": code, "message": message}]}))
}
