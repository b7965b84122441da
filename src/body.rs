//! Reads a JSON request body under a size cap.

use worker::Request;

use gateway::api::error::ApiError;

pub const MAX_BODY_BYTES: usize = 16 * 1024;

pub async fn read_json_body(req: &mut Request) -> Result<Vec<u8>, ApiError> {
    let headers = req.headers();
    if let Some(ct) = headers.get("content-type").ok().flatten() {
        let essence = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        // text/plain is what browsers send to skip a preflight; the body must still be JSON.
        if essence != "application/json" && !essence.ends_with("+json") && essence != "text/plain" {
            // Echoed in the error message: a hostile header is cut short there.
            return Err(ApiError::UnsupportedMediaType(
                ct.chars().take(100).collect(),
            ));
        }
    }
    let declared = headers
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|l| l.parse::<usize>().ok());
    if declared.is_some_and(|l| l > MAX_BODY_BYTES) {
        return Err(ApiError::PayloadTooLarge {
            max_bytes: MAX_BODY_BYTES,
        });
    }
    let bytes = req
        .bytes()
        .await
        .map_err(|e| ApiError::InvalidJson(format!("could not read the body: {e}")))?;
    if bytes.len() > MAX_BODY_BYTES {
        return Err(ApiError::PayloadTooLarge {
            max_bytes: MAX_BODY_BYTES,
        });
    }
    Ok(bytes)
}
