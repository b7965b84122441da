//! The QR code of `lightning:<BOLT11>`, drawn as SVG. Upper case: BOLT11
//! is case-insensitive, and upper case fits QR's alphanumeric mode, which
//! packs 5.5 bits a character instead of 8, for a code with fewer, larger
//! modules that phone cameras read at normal size (BOLT 11 recommends it).

use qrcodegen::{QrCode, QrCodeEcc};

/// Modules of white border on each side (the QR standard's quiet zone).
const QUIET: i32 = 4;

/// What the code says: `LIGHTNING:<BOLT11>`, upper case.
pub fn payload(bolt11: &str) -> String {
    format!("LIGHTNING:{}", bolt11.to_ascii_uppercase())
}

/// An SVG of the code of `text`, one path of dark modules, scaled by CSS;
/// `None` when the text does not fit a QR code.
pub fn svg(text: &str, label: &str) -> Option<String> {
    // Medium correction: a phone screen's glare or a thumb over a corner.
    let qr = QrCode::encode_text(text, QrCodeEcc::Medium).ok()?;
    let n = qr.size();
    let side = n + 2 * QUIET;
    let mut path = String::with_capacity((n * n) as usize * 6);
    for y in 0..n {
        let mut x = 0;
        while x < n {
            if !qr.get_module(x, y) {
                x += 1;
                continue;
            }
            // One run of dark modules on this row as one rectangle.
            let start = x;
            while x < n && qr.get_module(x, y) {
                x += 1;
            }
            path.push_str(&format!(
                "M{} {}h{}v1h-{}z",
                start + QUIET,
                y + QUIET,
                x - start,
                x - start
            ));
        }
    }
    Some(format!(
        r##"<svg class="qr" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {side} {side}" role="img" aria-label="{label}" shape-rendering="crispEdges"><rect width="{side}" height="{side}" fill="#fff"/><path fill="#000" d="{path}"/></svg>"##
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOLT11: &str = "lnbc2500u1pvjluezsp5zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zygspp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdq5xysxxatsyp3k7enxv4jsxqzpu9qrsgquk0rl77nj30yxdy8j9vdx85fkpmdla2087ne0xh8nhedh8w27kyke0lp53ut353s06fv3qfegext0eh0ymjpf39tuven09sam30g4vgpfna3rh";

    #[test]
    fn an_upper_case_invoice_makes_a_smaller_code_than_lower_case() {
        let upper = QrCode::encode_text(&payload(BOLT11), QrCodeEcc::Medium).unwrap();
        let lower = QrCode::encode_text(&format!("lightning:{BOLT11}"), QrCodeEcc::Medium).unwrap();
        assert!(
            upper.size() < lower.size(),
            "{} {}",
            upper.size(),
            lower.size()
        );
        assert!(payload(BOLT11).starts_with("LIGHTNING:LNBC2500U1"));
    }

    #[test]
    fn the_svg_draws_every_dark_module_inside_a_quiet_zone() {
        let svg = svg(&payload(BOLT11), "QR code").unwrap();
        let qr = QrCode::encode_text(&payload(BOLT11), QrCodeEcc::Medium).unwrap();
        let side = qr.size() + 8;
        assert!(svg.contains(&format!("viewBox=\"0 0 {side} {side}\"")));
        let dark: i32 = (0..qr.size())
            .flat_map(|y| (0..qr.size()).map(move |x| (x, y)))
            .filter(|(x, y)| qr.get_module(*x, *y))
            .count() as i32;
        let drawn: i32 = svg
            .split('h')
            .skip(1)
            .filter_map(|s| s.split('v').next()?.parse::<i32>().ok())
            .sum();
        assert_eq!(drawn, dark);
        assert!(svg.contains("role=\"img\""));
    }
}
