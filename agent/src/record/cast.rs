//! asciicast v2, the format `asciinema play` replays: a JSON header line,
//! then one JSON array per event, `[seconds, "o", "text"]` for output,
//! `"i"` for input, `"r"` for a resize to `"COLSxROWS"`.
//!
//! A terminal's bytes are not always UTF-8, and a multi-byte character may
//! be split between two reads: each stream keeps an incomplete character's
//! start for its next event, and bytes that are not UTF-8 become U+FFFD, so
//! every line is valid JSON whatever the tool wrote.

use std::time::Duration;

/// The kinds of event a recording holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Output,
    Input,
}

impl Kind {
    fn code(self) -> &'static str {
        match self {
            Kind::Output => "o",
            Kind::Input => "i",
        }
    }
}

/// The header line for a terminal of `cols`×`rows` started at `timestamp`
/// (Unix seconds).
pub fn header(cols: u16, rows: u16, timestamp: u64, title: &str) -> Vec<u8> {
    let h = serde_json::json!({
        "version": 2,
        "width": cols,
        "height": rows,
        "timestamp": timestamp,
        "title": title,
        "env": { "TERM": "xterm-256color" },
    });
    let mut line = h.to_string().into_bytes();
    line.push(b'\n');
    line
}

/// Appends a resize event.
pub fn resize(out: &mut Vec<u8>, at: Duration, cols: u16, rows: u16) {
    out.extend_from_slice(format!("[{:.6}, \"r\", \"{cols}x{rows}\"]\n", at.as_secs_f64()).as_bytes());
}

/// One stream's encoder: it holds the start of a character split between
/// events.
#[derive(Debug, Default)]
pub struct Stream {
    pending: Vec<u8>,
}

impl Stream {
    /// Appends the event for `data` at `at` to `out`; nothing when `data`
    /// only starts a character.
    pub fn event(&mut self, out: &mut Vec<u8>, at: Duration, kind: Kind, data: &[u8]) {
        let joined;
        let mut rest = if self.pending.is_empty() {
            data
        } else {
            joined = [std::mem::take(&mut self.pending).as_slice(), data].concat();
            joined.as_slice()
        };
        if rest.is_empty() {
            return;
        }
        let mark = out.len();
        out.extend_from_slice(format!("[{:.6}, \"{}\", \"", at.as_secs_f64(), kind.code()).as_bytes());
        let body = out.len();
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    escape(out, s);
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    escape(out, std::str::from_utf8(valid).unwrap_or_default());
                    match e.error_len() {
                        // A character cut at the end of this read.
                        None => {
                            self.pending = after.to_vec();
                            break;
                        }
                        Some(n) => {
                            out.extend_from_slice("\u{fffd}".as_bytes());
                            rest = &after[n..];
                        }
                    }
                }
            }
        }
        if out.len() == body {
            out.truncate(mark);
            return;
        }
        out.extend_from_slice(b"\"]\n");
    }
}

/// JSON string escaping, copying runs that need none in one go: terminal
/// output is mostly printable text.
fn escape(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f | 0x7f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if esc.is_empty() {
            out.extend_from_slice(format!("\\u{b:04x}").as_bytes());
        } else {
            out.extend_from_slice(esc);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(events: &[&[u8]]) -> Vec<serde_json::Value> {
        let mut s = Stream::default();
        let mut out = Vec::new();
        for (i, e) in events.iter().enumerate() {
            s.event(&mut out, Duration::from_millis(i as u64 * 1500), Kind::Output, e);
        }
        String::from_utf8(out)
            .expect("UTF-8")
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }

    #[test]
    fn every_byte_a_terminal_can_get_becomes_valid_json_and_text_comes_back() {
        let all: Vec<u8> = (0..=255u8).collect();
        let got = lines(&[b"a\"b\\c\r\n\t\x1b[1m\x7f", &all]);
        assert_eq!(got[0][0], 0.0);
        assert_eq!(got[0][1], "o");
        assert_eq!(got[0][2], "a\"b\\c\r\n\t\u{1b}[1m\u{7f}");
        assert_eq!(got[1][0], 1.5);
        let text = got[1][2].as_str().unwrap();
        assert!(text.starts_with("\0\u{1}"), "{text:?}");
        assert_eq!(text.matches('\u{fffd}').count(), 128, "each non-UTF-8 byte");
    }

    #[test]
    fn a_character_split_between_reads_is_kept_whole() {
        let euro = "€".as_bytes();
        let got = lines(&[&euro[..1], &euro[1..2], &[euro[2], b'!']]);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0][2], "€!");
    }

    #[test]
    fn the_header_is_what_asciinema_reads() {
        let h: serde_json::Value =
            serde_json::from_slice(&header(80, 24, 1_700_000_000, "node-a 7")).unwrap();
        assert_eq!(h["version"], 2);
        assert_eq!((h["width"].as_u64(), h["height"].as_u64()), (Some(80), Some(24)));
        let mut r = Vec::new();
        resize(&mut r, Duration::from_secs(2), 100, 30);
        assert_eq!(r, b"[2.000000, \"r\", \"100x30\"]\n");
    }
}
