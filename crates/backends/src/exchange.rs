//! How a backend's request is carried out: over the runtime's transport
//! (HTTP, or the relay for `nwc://`), or in process for the mock's `mock:`
//! requests. Every backend request goes through here, so no caller needs to
//! know which backend it is talking to.

use crate::http::{HttpRequest, HttpResponse, ReadLimits, Runtime, TransportError};
use crate::mock;

/// Sends `req`, reading the answer under the default limits.
pub async fn send<R: Runtime>(
    rt: &R,
    req: HttpRequest,
    timeout_ms: u64,
) -> Result<HttpResponse, TransportError> {
    send_limited(rt, req, timeout_ms, ReadLimits::default()).await
}

/// Sends `req`, reading the answer under `limits`.
pub async fn send_limited<R: Runtime>(
    rt: &R,
    req: HttpRequest,
    timeout_ms: u64,
    limits: ReadLimits,
) -> Result<HttpResponse, TransportError> {
    if mock::is_mock(&req) {
        let mut preimage = [0u8; 32];
        rt.random_bytes(&mut preimage);
        return limits.apply(mock::answer(&req, rt.now_ms() / 1000, preimage));
    }
    rt.send_limited(req, timeout_ms, limits).await
}
