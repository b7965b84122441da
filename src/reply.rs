//! Turns handler results into `worker::Response`s: JSON or HTML bodies,
//! CORS headers, and the error envelope. The only place that builds responses.

use serde_json::Value;
use worker::{Headers, Response};

use gateway::api::cors::AllowedOrigins;
use gateway::api::error::ApiError;

pub enum Body {
    Json(Value),
    Html(String),
    /// JSON that is already text (the OpenAPI document).
    JsonText(&'static str),
    Empty,
}

pub struct Reply {
    pub status: u16,
    pub body: Body,
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    pub fn json(status: u16, v: Value) -> Reply {
        Reply {
            status,
            body: Body::Json(v),
            headers: Vec::new(),
        }
    }

    pub fn html(status: u16, page: String) -> Reply {
        Reply {
            status,
            body: Body::Html(page),
            headers: gateway::health::status_page::security_headers(),
        }
    }

    /// The JSON body, if this reply has one.
    pub fn into_json(self) -> Value {
        match self.body {
            Body::Json(v) => v,
            _ => Value::Null,
        }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    pub fn error(e: &ApiError) -> Reply {
        let mut r = Reply::json(e.status(), e.to_json());
        if let Some(secs) = e.retry_after_secs() {
            r.headers.push(("retry-after", secs.to_string()));
        }
        if matches!(e, ApiError::Unauthorized) {
            r.headers.push(("www-authenticate", "Bearer".into()));
        }
        if let ApiError::MethodNotAllowed { allowed } = e {
            r.headers.push(("allow", allowed.join(", ")));
        }
        r
    }

    /// Builds the response; falls back to a minimal JSON 500 if the runtime refuses.
    pub fn into_response(
        self,
        cors: Option<&AllowedOrigins>,
        origin: Option<&str>,
        head: bool,
    ) -> worker::Result<Response> {
        let headers = Headers::new();
        let (content_type, bytes) = match self.body {
            Body::Json(v) => (
                "application/json; charset=utf-8",
                v.to_string().into_bytes(),
            ),
            Body::Html(s) => ("text/html; charset=utf-8", s.into_bytes()),
            Body::JsonText(s) => ("application/json; charset=utf-8", s.as_bytes().to_vec()),
            Body::Empty => ("text/plain", Vec::new()),
        };
        // A HEAD answer has the GET answer's headers and no body.
        let bytes = if head { Vec::new() } else { bytes };
        headers.set("content-type", content_type)?;
        headers.set("cache-control", "no-store")?;
        headers.set("x-content-type-options", "nosniff")?;
        for (k, v) in self.headers.iter().chain(
            cors.map(|c| c.response_headers(origin))
                .unwrap_or_default()
                .iter(),
        ) {
            headers.set(k, v)?;
        }
        Ok(Response::from_bytes(bytes)?
            .with_status(self.status)
            .with_headers(headers))
    }
}
