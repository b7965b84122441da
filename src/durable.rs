//! What the Worker's Durable Objects share: SQLite values, setting an
//! alarm, and a call to an object bounded in time.

use worker::{Env, Request, ScheduledTime, SqlStorageValue, State, Stub};

use crate::log;
use crate::runtime::WorkerRuntime;
use backends::http::Runtime;
use gateway::api::error::ApiError;
use gateway::log::Level;

/// A SQLite integer (saturating: stored times and counts fit in i64).
pub fn int(v: u64) -> SqlStorageValue {
    SqlStorageValue::Integer(i64::try_from(v).unwrap_or(i64::MAX))
}

/// A nullable SQLite integer.
pub fn opt(v: Option<u64>) -> SqlStorageValue {
    v.map(int).unwrap_or(SqlStorageValue::Null)
}

/// Sets the object's alarm at `at_ms` (absolute), never in the past; a
/// failure is logged under `object`.
pub async fn set_alarm_at(state: &State, env: &Env, object: &str, at_ms: u64) {
    let at = at_ms.max(WorkerRuntime.now_ms() + 1);
    let when = ScheduledTime::new(js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(
        at as f64,
    )));
    if let Err(e) = state.storage().set_alarm(when).await {
        log::notice(
            env,
            Level::Error,
            object,
            format!("could not arm the alarm: {e}"),
        );
    }
}

/// The stub of object `name` of the namespace bound as `binding`: a missing
/// binding is a configuration error naming it; the runtime's own failure
/// comes back inside, for the caller to map.
pub fn stub(env: &Env, binding: &str, name: &str) -> Result<worker::Result<Stub>, ApiError> {
    let ns = env
        .durable_object(binding)
        .map_err(|_| ApiError::Configuration {
            variable: binding.into(),
            message: "the Durable Object binding is missing from wrangler.toml".into(),
        })?;
    Ok(ns.id_from_name(name).and_then(|id| id.get_stub()))
}

/// What an object answered: status, headers and body.
pub struct Answer {
    pub status: u16,
    pub headers: worker::Headers,
    pub text: String,
}

/// Sends `req` to `stub`; `Ok(None)` when no answer came within `timeout_ms`.
pub async fn fetch_bounded(
    stub: &Stub,
    req: Request,
    timeout_ms: u64,
) -> worker::Result<Option<Answer>> {
    let sent = async {
        let resp = stub.fetch_with_request(req).await?;
        let status = resp.status_code();
        let headers = resp.headers().clone();
        let text = String::from_utf8(answer_bytes(resp).await?)
            .map_err(|e| worker::Error::RustError(e.to_string()))?;
        Ok::<_, worker::Error>(Answer {
            status,
            headers,
            text,
        })
    };
    let timer = worker::Delay::from(std::time::Duration::from_millis(timeout_ms));
    match futures_util::future::select(std::pin::pin!(sent), timer).await {
        futures_util::future::Either::Left((r, _)) => r.map(Some),
        futures_util::future::Either::Right(_) => Ok(None),
    }
}

/// A response's whole body in one read (the runtime's `arrayBuffer()`).
/// worker-rs reads any response body as a stream, chunk by chunk through
/// JavaScript, which costs workerd several times the CPU (issue 21). Only
/// for our own Durable Objects' answers, which were read whole before too:
/// a backend's answer is streamed under its read limit (a declared length
/// does not bound a compressed or chunked body).
async fn answer_bytes(resp: worker::Response) -> worker::Result<Vec<u8>> {
    let status = resp.status_code();
    // A null-body status has no body, and a Response rebuilt with one throws;
    // so does one outside 200-599 (worker-rs would panic rebuilding it).
    if matches!(status, 101 | 204 | 205 | 304) {
        return Ok(Vec::new());
    }
    if !(200..=599).contains(&status) {
        return Err(worker::Error::RustError(format!(
            "unexpected status {status}"
        )));
    }
    let raw: worker::web_sys::Response = resp.into();
    let buffer = js_sys::futures::JsFuture::from(raw.array_buffer()?).await?;
    Ok(js_sys::Uint8Array::new(&buffer).to_vec())
}
