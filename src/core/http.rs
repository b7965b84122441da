//! The I/O seam between the core and the runtime. The core describes HTTP
//! requests as values; the edge sends them with the Workers `fetch`, and host
//! tests answer them from scripts. Time and randomness come through the same
//! seam so retry and breaker logic is deterministic under test.

/// HTTP method of an outgoing provider request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpRequest {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
}

impl HttpRequest {
    pub fn get(url: String) -> Self {
        HttpRequest {
            method: Method::Get,
            url,
            headers: vec![("accept".into(), "application/json".into())],
            body: None,
        }
    }

    pub fn post_json(url: String, body: &serde_json::Value) -> Self {
        HttpRequest {
            method: Method::Post,
            url,
            headers: vec![
                ("accept".into(), "application/json".into()),
                ("content-type".into(), "application/json".into()),
            ],
            body: Some(body.to_string()),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpResponse {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: String,
}

impl HttpResponse {
    pub fn json(status: u16, body: &serde_json::Value) -> Self {
        HttpResponse {
            status,
            content_type: Some("application/json".into()),
            body: body.to_string(),
        }
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Why a request produced no HTTP response.
#[derive(Debug, Clone, PartialEq)]
pub enum TransportError {
    /// No answer within the attempt's timeout. The request may have arrived.
    Timeout,
    /// The connection failed or was cut; the runtime cannot say whether the
    /// request left, so callers must treat it as possibly delivered.
    Network(String),
    /// The response was larger than the cap.
    TooLarge,
}

/// What the core needs from the runtime.
#[allow(async_fn_in_trait)] // Wasm is single-threaded: no `Send` bound is wanted.
pub trait Runtime {
    /// Sends a request; gives up after `timeout_ms`.
    async fn send(
        &self,
        request: HttpRequest,
        timeout_ms: u64,
    ) -> Result<HttpResponse, TransportError>;
    async fn sleep(&self, ms: u64);
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
    fn random_bytes(&self, buf: &mut [u8]);

    fn random_u64(&self) -> u64 {
        let mut b = [0u8; 8];
        self.random_bytes(&mut b);
        u64::from_le_bytes(b)
    }
}
