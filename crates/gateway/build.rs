//! The OpenAPI document is kept indented in the repository and carried
//! without its layout in the wasm (about 2 KB gzip less): whitespace outside
//! strings is dropped, nothing else changes, key order included.

use std::{env, error::Error, fs, path::Path};

fn main() -> Result<(), Box<dyn Error>> {
    let source = "src/api/openapi.json";
    println!("cargo:rerun-if-changed={source}");
    let text = fs::read_to_string(source)?;
    let out = Path::new(&env::var("OUT_DIR")?).join("openapi.min.json");
    fs::write(out, without_layout(&text))?;
    Ok(())
}

/// JSON text without the whitespace between tokens.
fn without_layout(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            out.push(c);
        }
    }
    out
}
