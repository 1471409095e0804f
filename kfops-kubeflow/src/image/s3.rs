//! A small S3 client for uploading image build contexts to S3-compatible
//! storage (MinIO in Kubeflow, AWS S3), where Kaniko reads them from
//! (`--context s3://bucket/key`).
//!
//! Path-style addressing (`<endpoint>/<bucket>/<key>`), which MinIO and AWS
//! both accept, and requests signed with AWS Signature Version 4 in the
//! `Authorization` header: the signed headers are `host`,
//! `x-amz-content-sha256` (the hex SHA-256 of the payload) and `x-amz-date`,
//! the credential scope is `<date>/<region>/s3/aws4_request`.
//!
//! Errors carry the operation, the HTTP status and the `<Code>`/`<Message>`
//! of S3's XML error body; they never carry the secret key.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode, Url};
use sha2::{Digest, Sha256};

pub use crate::error::S3Error;

/// The region used when none is configured (MinIO accepts any region; this is its default).
pub const DEFAULT_REGION: &str = "us-east-1";

/// The key of the access key in Kubeflow's `mlpipeline-minio-artifact` secret.
pub const ACCESS_KEY_KEY: &str = "accesskey";

/// The key of the secret key in Kubeflow's `mlpipeline-minio-artifact` secret.
pub const SECRET_KEY_KEY: &str = "secretkey";

/// An S3 secret access key. Its `Debug` output is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey(String);

impl SecretKey {
    /// Wrap a secret access key.
    pub fn new(secret: impl Into<String>) -> Self {
        SecretKey(secret.into())
    }

    /// The secret itself (for signing; never log it).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretKey {
    /// Never prints the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

impl From<String> for SecretKey {
    fn from(s: String) -> Self {
        SecretKey(s)
    }
}

impl From<&str> for SecretKey {
    fn from(s: &str) -> Self {
        SecretKey(s.to_owned())
    }
}

/// Where and as whom to talk to S3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    /// The endpoint, `http(s)://host[:port]` without a path, e.g.
    /// `http://minio-service.kubeflow:9000` or `https://s3.amazonaws.com`.
    /// Buckets are addressed path-style (`<endpoint>/<bucket>/<key>`).
    pub endpoint: String,
    /// The signing region ([`DEFAULT_REGION`] unless the storage says otherwise).
    pub region: String,
    /// The access key id.
    pub access_key: String,
    /// The secret access key.
    pub secret_key: SecretKey,
}

impl S3Config {
    /// A configuration in [`DEFAULT_REGION`].
    pub fn new(endpoint: impl Into<String>, access_key: impl Into<String>, secret_key: impl Into<SecretKey>) -> Self {
        S3Config {
            endpoint: endpoint.into(),
            region: DEFAULT_REGION.to_owned(),
            access_key: access_key.into(),
            secret_key: secret_key.into(),
        }
    }

    /// The same configuration with another signing region.
    pub fn with_region(mut self, region: impl Into<String>) -> Self {
        self.region = region.into();
        self
    }
}

/// The access key and secret key from the data of Kubeflow's
/// `mlpipeline-minio-artifact` secret (keys `accesskey` and `secretkey`).
///
/// The values must already be base64-decoded by the caller (as `stringData`,
/// or the decoded `data` of the Kubernetes secret). Surrounding whitespace
/// (a trailing newline from `echo | base64`) is trimmed.
pub fn credentials_from_secret(data: &BTreeMap<String, String>) -> Result<(String, String), S3Error> {
    let get = |key: &str| {
        data.get(key)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| S3Error::MissingCredential { key: key.to_owned() })
    };
    Ok((get(ACCESS_KEY_KEY)?, get(SECRET_KEY_KEY)?))
}

/// The `s3://bucket/key` URL of an object, as Kaniko's `--context` expects it.
pub fn object_url(bucket: &str, key: &str) -> String {
    format!("s3://{bucket}/{}", key.trim_start_matches('/'))
}

/// A client for one S3 endpoint and one set of credentials.
#[derive(Debug, Clone)]
pub struct S3Client {
    http: reqwest::Client,
    /// `scheme://host[:port]`, without a trailing slash.
    base: String,
    /// The `Host` header value (`host[:port]`, the port only when not the scheme's default).
    host: String,
    region: String,
    access_key: String,
    secret_key: SecretKey,
}

/// The outcome of a request that reached the server.
struct Answer {
    status: StatusCode,
    body: Vec<u8>,
}

impl S3Client {
    /// A client for `config.endpoint`; fails when the endpoint is not an
    /// `http(s)://host[:port]` URL or a credential or the region is empty.
    pub fn new(config: S3Config) -> Result<Self, S3Error> {
        let url = Url::parse(config.endpoint.trim())
            .map_err(|e| S3Error::Config(format!("endpoint `{}` is not a URL: {e}", config.endpoint)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(S3Error::Config(format!("endpoint `{}` must start with http:// or https://", config.endpoint)));
        }
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err(S3Error::Config(format!(
                "endpoint `{}` must be `scheme://host[:port]` without a path (buckets are addressed path-style)",
                config.endpoint
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(S3Error::Config(
                "the endpoint must not carry credentials; use the access and secret keys".into(),
            ));
        }
        let host_name =
            url.host_str().ok_or_else(|| S3Error::Config(format!("endpoint `{}` has no host", config.endpoint)))?;
        let host = match url.port() {
            Some(port) => format!("{host_name}:{port}"),
            None => host_name.to_owned(),
        };
        if config.access_key.trim().is_empty() {
            return Err(S3Error::MissingCredential { key: ACCESS_KEY_KEY.into() });
        }
        if config.secret_key.expose().is_empty() {
            return Err(S3Error::MissingCredential { key: SECRET_KEY_KEY.into() });
        }
        if config.region.trim().is_empty() {
            return Err(S3Error::Config("the region is empty".into()));
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(300))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| S3Error::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(S3Client {
            http,
            base: format!("{}://{host}", url.scheme()),
            host,
            region: config.region.trim().to_owned(),
            access_key: config.access_key.trim().to_owned(),
            secret_key: config.secret_key,
        })
    }

    /// The `s3://bucket/key` URL of an object, as Kaniko's `--context` expects it.
    pub fn object_url(&self, bucket: &str, key: &str) -> String {
        object_url(bucket, key)
    }

    /// Make sure `bucket` exists: `HEAD` it, and create it when that answers 404.
    /// A bucket that already exists and is owned by these credentials is fine.
    pub async fn ensure_bucket(&self, bucket: &str) -> Result<(), S3Error> {
        check_bucket(bucket)?;
        let head = self.send("HeadBucket", Method::HEAD, bucket, None, Vec::new(), None).await?;
        if head.status.is_success() {
            return Ok(());
        }
        if head.status != StatusCode::NOT_FOUND {
            return Err(status_error("HeadBucket", bucket, &head));
        }
        let body = if self.region == DEFAULT_REGION {
            Vec::new()
        } else {
            format!(
                "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                 <LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
                self.region
            )
            .into_bytes()
        };
        let put = self.send("CreateBucket", Method::PUT, bucket, None, body, None).await?;
        if put.status.is_success() {
            return Ok(());
        }
        let err = status_error("CreateBucket", bucket, &put);
        match &err {
            // Created concurrently by these same credentials (MinIO and AWS outside us-east-1).
            S3Error::Status { code, .. } if code == "BucketAlreadyOwnedByYou" => Ok(()),
            _ => Err(err),
        }
    }

    /// Upload `bytes` as `bucket/key` with the given `Content-Type`.
    pub async fn put_object(&self, bucket: &str, key: &str, bytes: Vec<u8>, content_type: &str) -> Result<(), S3Error> {
        check_bucket(bucket)?;
        check_key(key)?;
        let answer = self.send("PutObject", Method::PUT, bucket, Some(key), bytes, Some(content_type)).await?;
        if answer.status.is_success() {
            Ok(())
        } else {
            Err(status_error("PutObject", &format!("{bucket}/{key}"), &answer))
        }
    }

    /// Download `bucket/key`.
    pub async fn get_object(&self, bucket: &str, key: &str) -> Result<Vec<u8>, S3Error> {
        check_bucket(bucket)?;
        check_key(key)?;
        let answer = self.send("GetObject", Method::GET, bucket, Some(key), Vec::new(), None).await?;
        if answer.status.is_success() {
            Ok(answer.body)
        } else {
            Err(status_error("GetObject", &format!("{bucket}/{key}"), &answer))
        }
    }

    /// Delete `bucket/key`; an object that does not exist is fine.
    pub async fn delete_object(&self, bucket: &str, key: &str) -> Result<(), S3Error> {
        check_bucket(bucket)?;
        check_key(key)?;
        let answer = self.send("DeleteObject", Method::DELETE, bucket, Some(key), Vec::new(), None).await?;
        if answer.status.is_success() || answer.status == StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(status_error("DeleteObject", &format!("{bucket}/{key}"), &answer))
        }
    }

    /// Sign and send one request; an `Err` only when no answer arrived.
    async fn send(
        &self,
        operation: &str,
        method: Method,
        bucket: &str,
        key: Option<&str>,
        body: Vec<u8>,
        content_type: Option<&str>,
    ) -> Result<Answer, S3Error> {
        let target = match key {
            Some(k) => format!("{bucket}/{k}"),
            None => bucket.to_owned(),
        };
        let transport = |message: String| S3Error::Transport {
            operation: operation.to_owned(),
            target: target.clone(),
            endpoint: self.base.clone(),
            message,
        };
        let path = match key {
            Some(k) => format!("/{}/{}", uri_encode(bucket, false), uri_encode(k, true)),
            None => format!("/{}", uri_encode(bucket, false)),
        };
        let payload_hash = hex::encode(Sha256::digest(&body));
        let amz_date = amz_date(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()));
        let signer =
            Signer { access_key: &self.access_key, secret_key: self.secret_key.expose(), region: &self.region };
        let authorization = signer.authorization(
            method.as_str(),
            &path,
            "",
            &[("host", &self.host), ("x-amz-content-sha256", &payload_hash), ("x-amz-date", &amz_date)],
            &payload_hash,
            &amz_date,
        );
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("x-amz-date", &amz_date)
            .header("x-amz-content-sha256", &payload_hash)
            .header(reqwest::header::AUTHORIZATION, authorization);
        if let Some(ct) = content_type {
            request = request.header(reqwest::header::CONTENT_TYPE, ct);
        }
        let response = request.body(body).send().await.map_err(|e| transport(error_chain(&e)))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| transport(error_chain(&e)))?.to_vec();
        Ok(Answer { status, body })
    }
}

/// The error for an unsuccessful answer, from S3's XML error body when there is one.
fn status_error(operation: &str, target: &str, answer: &Answer) -> S3Error {
    let text = String::from_utf8_lossy(&answer.body);
    let (code, message) = parse_error_body(&text);
    let reason = answer.status.canonical_reason().unwrap_or("error");
    S3Error::Status {
        operation: operation.to_owned(),
        target: target.to_owned(),
        status: answer.status.as_u16(),
        code: code.unwrap_or_else(|| reason.replace(' ', "")),
        message: message.unwrap_or_else(|| match answer.status {
            StatusCode::NOT_FOUND => "the bucket or object does not exist".to_owned(),
            StatusCode::FORBIDDEN => "access denied (check the access key, secret key and region)".to_owned(),
            _ if text.trim().is_empty() => reason.to_owned(),
            _ => text.trim().chars().take(300).collect(),
        }),
    }
}

/// `<Code>` and `<Message>` of an S3 XML error body.
fn parse_error_body(xml: &str) -> (Option<String>, Option<String>) {
    let element = |name: &str| {
        let open = format!("<{name}>");
        let start = xml.find(&open)? + open.len();
        let end = xml[start..].find(&format!("</{name}>"))? + start;
        let value = unescape_xml(xml[start..end].trim());
        (!value.is_empty()).then_some(value)
    };
    (element("Code"), element("Message"))
}

/// Undo the five predefined XML entities.
fn unescape_xml(s: &str) -> String {
    s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'").replace("&amp;", "&")
}

/// A reqwest error with its sources, for messages.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

/// Bucket names are 3-63 lowercase letters, digits, dots and hyphens (path-style needs no slash).
fn check_bucket(bucket: &str) -> Result<(), S3Error> {
    let valid = (3..=63).contains(&bucket.len())
        && bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
        && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
    if valid {
        Ok(())
    } else {
        Err(S3Error::Config(format!(
            "`{bucket}` is not a valid bucket name (3-63 lowercase letters, digits, dots and hyphens)"
        )))
    }
}

/// Object keys are non-empty, at most 1024 bytes, and do not start with `/`.
fn check_key(key: &str) -> Result<(), S3Error> {
    if key.is_empty() || key.len() > 1024 || key.starts_with('/') {
        return Err(S3Error::Config(format!("`{key}` is not a valid object key (1-1024 bytes, no leading `/`)")));
    }
    Ok(())
}

/// SigV4 URI encoding: every byte except `A-Z a-z 0-9 - . _ ~` as `%XX`
/// (uppercase hex); `/` is kept when `keep_slash`.
fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') || (keep_slash && b == b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `YYYYMMDDTHHMMSSZ` (UTC) for seconds since the Unix epoch.
fn amz_date(unix_seconds: u64) -> String {
    let days = i64::try_from(unix_seconds / 86_400).unwrap_or(0);
    let secs = unix_seconds % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z", secs / 3600, secs % 3600 / 60, secs % 60)
}

fn hmac_sha256(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// AWS Signature Version 4 for the `s3` service.
struct Signer<'a> {
    access_key: &'a str,
    secret_key: &'a str,
    region: &'a str,
}

impl Signer<'_> {
    /// The canonical request. `headers` are (lowercase name, value) pairs, all of them signed.
    fn canonical_request(
        method: &str,
        canonical_uri: &str,
        canonical_query: &str,
        headers: &[(&str, &str)],
        payload_hash: &str,
    ) -> (String, String) {
        let mut sorted: Vec<(String, String)> = headers
            .iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v.split_whitespace().collect::<Vec<_>>().join(" ")))
            .collect();
        sorted.sort();
        let signed_headers = sorted.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(";");
        let canonical_headers: String = sorted.iter().map(|(n, v)| format!("{n}:{v}\n")).collect();
        let request = format!(
            "{method}\n{canonical_uri}\n{canonical_query}\n{canonical_headers}\n{signed_headers}\n{payload_hash}"
        );
        (request, signed_headers)
    }

    /// `<date>/<region>/s3/aws4_request`.
    fn scope(&self, amz_date: &str) -> String {
        format!("{}/{}/s3/aws4_request", &amz_date[..8.min(amz_date.len())], self.region)
    }

    fn string_to_sign(&self, amz_date: &str, canonical_request: &str) -> String {
        format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{}\n{}",
            self.scope(amz_date),
            hex::encode(Sha256::digest(canonical_request.as_bytes()))
        )
    }

    fn signature(&self, amz_date: &str, string_to_sign: &str) -> String {
        let date = &amz_date[..8.min(amz_date.len())];
        let k_date = hmac_sha256(format!("AWS4{}", self.secret_key).as_bytes(), date);
        let k_region = hmac_sha256(&k_date, self.region);
        let k_service = hmac_sha256(&k_region, "s3");
        let k_signing = hmac_sha256(&k_service, "aws4_request");
        hex::encode(hmac_sha256(&k_signing, string_to_sign))
    }

    /// The `Authorization` header value.
    fn authorization(
        &self,
        method: &str,
        canonical_uri: &str,
        canonical_query: &str,
        headers: &[(&str, &str)],
        payload_hash: &str,
        amz_date: &str,
    ) -> String {
        let (request, signed_headers) =
            Self::canonical_request(method, canonical_uri, canonical_query, headers, payload_hash);
        let signature = self.signature(amz_date, &self.string_to_sign(amz_date, &request));
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{},SignedHeaders={signed_headers},Signature={signature}",
            self.access_key,
            self.scope(amz_date)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn aws_example_signer() -> Signer<'static> {
        Signer {
            access_key: "AKIAIOSFODNN7EXAMPLE",
            secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            region: "us-east-1",
        }
    }

    /// AWS's "GET Object" example (S3 API reference, "Signature calculations
    /// for the Authorization header"): GET /test.txt with `Range: bytes=0-9`.
    const EXAMPLE_HEADERS: [(&str, &str); 4] = [
        ("Host", "examplebucket.s3.amazonaws.com"),
        ("Range", "bytes=0-9"),
        ("x-amz-content-sha256", EMPTY_SHA256),
        ("x-amz-date", "20130524T000000Z"),
    ];

    #[test]
    fn sigv4_reproduces_the_aws_get_object_example() {
        let signer = aws_example_signer();
        let (canonical, signed) = Signer::canonical_request("GET", "/test.txt", "", &EXAMPLE_HEADERS, EMPTY_SHA256);
        assert_eq!(
            canonical,
            "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n\
             x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n\
             x-amz-date:20130524T000000Z\n\nhost;range;x-amz-content-sha256;x-amz-date\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(signed, "host;range;x-amz-content-sha256;x-amz-date");
        let string_to_sign = signer.string_to_sign("20130524T000000Z", &canonical);
        assert_eq!(
            string_to_sign,
            "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n\
             7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972"
        );
        assert_eq!(
            signer.signature("20130524T000000Z", &string_to_sign),
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
        assert_eq!(
            signer.authorization("GET", "/test.txt", "", &EXAMPLE_HEADERS, EMPTY_SHA256, "20130524T000000Z"),
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,\
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,\
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn header_order_does_not_change_the_signature() {
        let mut reversed = EXAMPLE_HEADERS;
        reversed.reverse();
        assert_eq!(
            aws_example_signer().authorization("GET", "/test.txt", "", &reversed, EMPTY_SHA256, "20130524T000000Z"),
            aws_example_signer().authorization(
                "GET",
                "/test.txt",
                "",
                &EXAMPLE_HEADERS,
                EMPTY_SHA256,
                "20130524T000000Z"
            ),
        );
    }

    #[test]
    fn amz_date_formats_utc() {
        assert_eq!(amz_date(1_369_353_600), "20130524T000000Z");
        assert_eq!(amz_date(0), "19700101T000000Z");
        assert_eq!(amz_date(951_782_400 + 3_661), "20000229T010101Z");
        assert_eq!(amz_date(4_102_444_799), "20991231T235959Z");
    }

    #[test]
    fn uri_encoding_keeps_unreserved_and_slashes_in_keys() {
        assert_eq!(uri_encode("ctx/a b+c~d_e-f.tar.gz", true), "ctx/a%20b%2Bc~d_e-f.tar.gz");
        assert_eq!(uri_encode("a/b", false), "a%2Fb");
        assert_eq!(uri_encode("é", true), "%C3%A9");
    }

    #[test]
    fn error_bodies_are_parsed() {
        let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SignatureDoesNotMatch</Code>\
                   <Message>The request signature we calculated does not match &amp; so on</Message>\
                   <RequestId>1</RequestId></Error>";
        let answer = Answer { status: StatusCode::FORBIDDEN, body: xml.as_bytes().to_vec() };
        let err = status_error("PutObject", "b/k", &answer);
        assert_eq!(
            err.to_string(),
            "S3 PutObject of `b/k` failed with HTTP 403 SignatureDoesNotMatch: \
             The request signature we calculated does not match & so on"
        );
        assert_eq!(err.kind(), kfops_core::ErrorKind::Unauthenticated);
        let head = status_error("HeadBucket", "b", &Answer { status: StatusCode::FORBIDDEN, body: Vec::new() });
        assert_eq!(
            head.to_string(),
            "S3 HeadBucket of `b` failed with HTTP 403 Forbidden: \
             access denied (check the access key, secret key and region)"
        );
        assert_eq!(head.kind(), kfops_core::ErrorKind::PermissionDenied);
    }

    #[test]
    fn credentials_come_from_the_minio_artifact_secret() {
        let mut data = BTreeMap::new();
        data.insert("accesskey".to_owned(), "minio".to_owned());
        assert_eq!(credentials_from_secret(&data), Err(S3Error::MissingCredential { key: "secretkey".into() }));
        assert!(credentials_from_secret(&data).unwrap_err().to_string().contains("`secretkey`"));
        data.insert("secretkey".to_owned(), "minio123\n".to_owned());
        assert_eq!(credentials_from_secret(&data), Ok(("minio".to_owned(), "minio123".to_owned())));
        data.remove("accesskey");
        assert_eq!(credentials_from_secret(&data), Err(S3Error::MissingCredential { key: "accesskey".into() }));
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let config = S3Config::new("http://minio-service.kubeflow:9000", "minio", "minio123");
        assert_eq!(config.region, "us-east-1");
        let client = S3Client::new(config.clone()).expect("client");
        for debug in [format!("{config:?}"), format!("{client:?}")] {
            assert!(!debug.contains("minio123"), "{debug}");
            assert!(debug.contains("<redacted>"), "{debug}");
        }
        assert_eq!(client.host, "minio-service.kubeflow:9000");
        assert_eq!(client.object_url("contexts", "trainer/ctx-01.tar.gz"), "s3://contexts/trainer/ctx-01.tar.gz");
    }

    #[test]
    fn endpoints_and_names_are_validated() {
        let new = |endpoint: &str| S3Client::new(S3Config::new(endpoint, "a", "b"));
        assert_eq!(new("https://s3.amazonaws.com").expect("aws").host, "s3.amazonaws.com");
        assert_eq!(new("https://s3.amazonaws.com:443/").expect("aws").host, "s3.amazonaws.com");
        for bad in ["minio:9000", "ftp://minio", "http://minio:9000/bucket", "http://u:p@minio"] {
            assert!(matches!(new(bad), Err(S3Error::Config(_))), "{bad}");
        }
        assert!(matches!(
            S3Client::new(S3Config::new("http://m", "", "b")),
            Err(S3Error::MissingCredential { key }) if key == "accesskey"
        ));
        assert!(check_bucket("kfops-contexts").is_ok());
        for bad in ["ab", "Upper", "a/b", "-ab", "ab-"] {
            assert!(check_bucket(bad).is_err(), "{bad}");
        }
        assert!(check_key("/abs").is_err());
        assert!(check_key("").is_err());
    }
}
