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

    /// A form-encoded POST (`application/x-www-form-urlencoded`), as
    /// phoenixd's API takes its parameters.
    pub fn post_form(url: String, fields: &[(&str, &str)]) -> Self {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        HttpRequest {
            method: Method::Post,
            url,
            headers: vec![
                ("accept".into(), "application/json".into()),
                (
                    "content-type".into(),
                    "application/x-www-form-urlencoded".into(),
                ),
            ],
            body: Some(body),
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
    /// The answer's status and headers came, its body not within the
    /// timeout: the server acted on the request and then trickled.
    SlowBody,
}

/// Provider responses larger than this are refused unless a request asks
/// for another cap.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// How much of a response body the runtime reads.
///
/// These travel next to the request ([`Runtime::send_limited`]) rather than
/// inside [`HttpRequest`], so code that builds an `HttpRequest` with a struct
/// literal keeps compiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    /// The body is refused ([`TransportError::TooLarge`]) as soon as the bytes
    /// read pass this, whatever `Content-Length` says or omits: a chunked
    /// body is never read to its end first.
    pub max_response_bytes: usize,
    /// Stop reading at the first `\n` and return the body up to and
    /// including it; the rest of the stream is cancelled. For streaming
    /// endpoints (LND's newline-delimited JSON) whose first line is the
    /// current state and whose stream stays open until something changes.
    /// A body that ends without a newline is returned whole.
    pub first_line_only: bool,
}

impl Default for ReadLimits {
    fn default() -> Self {
        ReadLimits {
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            first_line_only: false,
        }
    }
}

impl ReadLimits {
    /// The whole body, at most `max_response_bytes`.
    pub fn capped(max_response_bytes: usize) -> Self {
        ReadLimits {
            max_response_bytes,
            first_line_only: false,
        }
    }

    /// Only the first line, with the default cap.
    pub fn first_line() -> Self {
        ReadLimits {
            first_line_only: true,
            ..ReadLimits::default()
        }
    }

    pub fn with_max_response_bytes(mut self, max_response_bytes: usize) -> Self {
        self.max_response_bytes = max_response_bytes;
        self
    }

    /// Applies the limits to a body that is already in memory (host test
    /// runtimes): the same result as reading it chunk by chunk.
    pub fn apply(self, mut response: HttpResponse) -> Result<HttpResponse, TransportError> {
        let mut reader = BodyReader::new(self);
        reader.push(response.body.as_bytes())?;
        response.body = reader.finish();
        Ok(response)
    }
}

/// Accumulates a streamed response body under [`ReadLimits`]. The runtime
/// feeds it chunks as they arrive and stops reading (and cancels the
/// stream) as soon as [`BodyReader::push`] says it is done or refuses.
#[derive(Debug)]
pub struct BodyReader {
    limits: ReadLimits,
    buf: Vec<u8>,
    done: bool,
}

impl BodyReader {
    pub fn new(limits: ReadLimits) -> Self {
        BodyReader {
            limits,
            buf: Vec::new(),
            done: false,
        }
    }

    /// Adds one chunk. `Ok(true)`: nothing more is wanted (first line
    /// complete). `Err(TooLarge)`: the cap was passed; stop reading.
    pub fn push(&mut self, chunk: &[u8]) -> Result<bool, TransportError> {
        if self.done {
            return Ok(true);
        }
        let (take, done) = match self.limits.first_line_only {
            true => match chunk.iter().position(|b| *b == b'\n') {
                Some(i) => (&chunk[..=i], true),
                None => (chunk, false),
            },
            false => (chunk, false),
        };
        if self.buf.len().saturating_add(take.len()) > self.limits.max_response_bytes {
            return Err(TransportError::TooLarge);
        }
        self.buf.extend_from_slice(take);
        self.done = done;
        Ok(done)
    }

    /// Bytes kept so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The body read, as text (invalid UTF-8 replaced).
    pub fn finish(self) -> String {
        String::from_utf8_lossy(&self.buf).into_owned()
    }
}

/// What the core needs from the runtime.
#[allow(async_fn_in_trait)] // Wasm is single-threaded: no `Send` bound is wanted.
pub trait Runtime {
    /// Sends a request; gives up after `timeout_ms`. Reads the body under
    /// the default [`ReadLimits`] (1 MiB, whole body).
    async fn send(
        &self,
        request: HttpRequest,
        timeout_ms: u64,
    ) -> Result<HttpResponse, TransportError>;

    /// Sends a request and reads its body under `limits`. Runtimes that
    /// stream (the Worker) override this to stop reading early; the default
    /// applies the limits to the body `send` returned, which gives the same
    /// answer for bodies held in memory (host tests, the simulation).
    async fn send_limited(
        &self,
        request: HttpRequest,
        timeout_ms: u64,
        limits: ReadLimits,
    ) -> Result<HttpResponse, TransportError> {
        limits.apply(self.send(request, timeout_ms).await?)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A chunked 10 MB body with no Content-Length is refused once the cap
    /// is passed, after reading little more than the cap.
    #[test]
    fn body_reader_refuses_while_streaming() {
        let cap = 64 * 1024;
        let chunk = vec![b'x'; 16 * 1024];
        let mut reader = BodyReader::new(ReadLimits::capped(cap));
        let mut pushed = 0usize;
        let mut outcome = Ok(false);
        for _ in 0..(10 * 1024 * 1024 / chunk.len()) {
            pushed += 1;
            outcome = reader.push(&chunk);
            if !matches!(outcome, Ok(false)) {
                break;
            }
        }
        assert_eq!(outcome, Err(TransportError::TooLarge));
        assert_eq!(
            pushed,
            cap / chunk.len() + 1,
            "stops at the first chunk past the cap"
        );
        assert!(reader.len() <= cap);
    }

    #[test]
    fn body_reader_accepts_exactly_the_cap() {
        let mut reader = BodyReader::new(ReadLimits::capped(4));
        assert_eq!(reader.push(b"ab"), Ok(false));
        assert_eq!(reader.push(b"cd"), Ok(false));
        assert_eq!(reader.push(b"e"), Err(TransportError::TooLarge));
    }

    #[test]
    fn first_line_mode_stops_at_the_first_newline() {
        let mut reader = BodyReader::new(ReadLimits::first_line());
        assert_eq!(reader.push(b"{\"result\":{\"sta"), Ok(false));
        assert_eq!(
            reader.push(b"tus\":\"IN_FLIGHT\"}}\n{\"result\":{\"status\":\"SUCC"),
            Ok(true)
        );
        assert_eq!(
            reader.push(b"EEDED\"}}\n"),
            Ok(true),
            "nothing more is read"
        );
        assert_eq!(reader.finish(), "{\"result\":{\"status\":\"IN_FLIGHT\"}}\n");

        // The cap still applies to the first line.
        let mut reader = BodyReader::new(ReadLimits::first_line().with_max_response_bytes(8));
        assert_eq!(reader.push(b"0123456789\n"), Err(TransportError::TooLarge));

        // A body without a newline is returned whole.
        let r =
            ReadLimits::first_line().apply(HttpResponse::json(200, &serde_json::json!({"a": 1})));
        assert_eq!(r.map(|r| r.body), Ok("{\"a\":1}".to_string()));
    }

    #[test]
    fn form_bodies_are_url_encoded() {
        let r = HttpRequest::post_form(
            "https://p.example/createinvoice".into(),
            &[("description", "café & tea=1"), ("amountSat", "21")],
        );
        assert_eq!(r.method, Method::Post);
        assert_eq!(
            r.body.as_deref(),
            Some("description=caf%C3%A9+%26+tea%3D1&amountSat=21")
        );
        assert!(r.headers.contains(&(
            "content-type".into(),
            "application/x-www-form-urlencoded".into()
        )));
    }

    #[test]
    fn apply_refuses_oversized_in_memory_bodies() {
        let big = HttpResponse {
            status: 200,
            content_type: None,
            body: "y".repeat(DEFAULT_MAX_RESPONSE_BYTES + 1),
        };
        assert_eq!(
            ReadLimits::default().apply(big.clone()),
            Err(TransportError::TooLarge)
        );
        assert!(ReadLimits::capped(DEFAULT_MAX_RESPONSE_BYTES + 1)
            .apply(big)
            .is_ok());
    }
}
