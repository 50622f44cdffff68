//! QR codes drawn in the terminal with Unicode half blocks.
//!
//! Each character shows two modules, one above the other. As `qrencode -t UTF8` does, the
//! *light* modules are drawn (terminals are mostly light text on a dark background), so the
//! code reads as dark modules on a light field with the quiet zone around it.

use qrcode::{Color, QrCode};

/// Modules of light border on every side, as the QR specification requires for scanning.
const QUIET_ZONE: usize = 4;

/// Why a QR code could not be made.
#[derive(Debug)]
pub(crate) struct QrError(qrcode::types::QrError);

impl std::fmt::Display for QrError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot draw a QR code: {}", self.0)
    }
}

/// `data` as a QR code, one string per terminal line (no trailing newline).
pub(crate) fn render(data: &[u8]) -> Result<Vec<String>, QrError> {
    let code = QrCode::new(data).map_err(QrError)?;
    Ok(render_modules(&code.to_colors(), code.width()))
}

/// Draws a square of `width` × `width` modules (row by row) with the quiet zone.
fn render_modules(modules: &[Color], width: usize) -> Vec<String> {
    let full = width + 2 * QUIET_ZONE;
    let light = |row: usize, col: usize| -> bool {
        if row < QUIET_ZONE || col < QUIET_ZONE {
            return true;
        }
        let (r, c) = (row - QUIET_ZONE, col - QUIET_ZONE);
        if r >= width || c >= width {
            return true;
        }
        modules[r * width + c] == Color::Light
    };
    (0..full)
        .step_by(2)
        .map(|row| {
            (0..full)
                .map(|col| {
                    let top = light(row, col);
                    // An odd number of rows: the last half-line's lower half is outside, dark.
                    let bottom = row + 1 < full && light(row + 1, col);
                    match (top, bottom) {
                        (true, true) => '█',
                        (true, false) => '▀',
                        (false, true) => '▄',
                        (false, false) => ' ',
                    }
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads the drawing back into modules (light = true), quiet zone included.
    fn decode(lines: &[String]) -> Vec<Vec<bool>> {
        let mut rows = Vec::new();
        for line in lines {
            let (mut top, mut bottom) = (Vec::new(), Vec::new());
            for c in line.chars() {
                let (t, b) = match c {
                    '█' => (true, true),
                    '▀' => (true, false),
                    '▄' => (false, true),
                    ' ' => (false, false),
                    other => panic!("unexpected {other:?}"),
                };
                top.push(t);
                bottom.push(b);
            }
            rows.push(top);
            rows.push(bottom);
        }
        rows
    }

    #[test]
    fn drawing_matches_the_code_module_for_module() {
        let data: Vec<u8> = (0..=79).collect();
        let code = QrCode::new(&data).unwrap();
        let width = code.width();
        let lines = render(&data).unwrap();
        let full = width + 2 * QUIET_ZONE;
        assert_eq!(lines.len(), full.div_ceil(2));
        assert!(lines.iter().all(|l| l.chars().count() == full));

        let rows = decode(&lines);
        let colors = code.to_colors();
        for (r, row) in rows.iter().enumerate().take(full) {
            for (c, &is_light) in row.iter().enumerate() {
                let expected = if r < QUIET_ZONE
                    || c < QUIET_ZONE
                    || r >= QUIET_ZONE + width
                    || c >= QUIET_ZONE + width
                {
                    true
                } else {
                    colors[(r - QUIET_ZONE) * width + (c - QUIET_ZONE)] == Color::Light
                };
                assert_eq!(is_light, expected, "module ({r}, {c})");
            }
        }
        // Some dark modules exist: the finder patterns at least.
        assert!(rows.iter().flatten().any(|&m| !m));
    }

    #[test]
    fn different_data_draws_differently() {
        assert_ne!(
            render(b"one safety number").unwrap(),
            render(b"another safety number").unwrap()
        );
    }

    #[test]
    fn too_much_data_is_an_error() {
        assert!(render(&vec![0u8; 4000]).is_err());
    }
}
