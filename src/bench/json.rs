//! A small JSON reader for figures that other tools write (quinn-perf's `--json`, which
//! `weft bench --bulk --quinn-json` sets beside its own). The allowed dependencies name no JSON
//! crate, and this needs little: values, objects by key, no serialisation.
//!
//! Everything is fallible and bounded: the text is a file an operator points at, so a truncated
//! or wrong file is an error saying where, never a panic; nesting is capped at [`MAX_DEPTH`], and
//! every loop advances through the input, so the work is linear in its length.

/// Deepest nesting of arrays and objects accepted (quinn-perf's output nests four deep).
pub const MAX_DEPTH: usize = 64;

/// A JSON value. Objects keep their members in order; a repeated key's first member wins.
#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// Any number, as the nearest `f64`.
    Number(f64),
    /// A string, escapes resolved.
    String(String),
    /// An array.
    Array(Vec<Json>),
    /// An object's members in the order written.
    Object(Vec<(String, Json)>),
}

/// Why a text is not JSON: what was expected and the byte offset where it was not found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{what} at byte {at}")]
pub struct JsonError {
    /// Byte offset into the text.
    pub at: usize,
    /// What was wrong there.
    pub what: &'static str,
}

impl Json {
    /// Parses one JSON value, with nothing but white space around it.
    pub fn parse(text: &str) -> Result<Json, JsonError> {
        let mut reader = Reader {
            bytes: text.as_bytes(),
            at: 0,
        };
        let value = reader.value(0)?;
        reader.space();
        if reader.at != reader.bytes.len() {
            return Err(reader.error("text after the JSON value"));
        }
        Ok(value)
    }

    /// The member `key` of an object (`None` for a missing key or a value that is no object).
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The number, if this is one.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Json::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// The boolean, if this is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Json::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The items, if this is an array.
    pub fn as_array(&self) -> Option<&[Json]> {
        match self {
            Json::Array(items) => Some(items),
            _ => None,
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn error(&self, what: &'static str) -> JsonError {
        JsonError { at: self.at, what }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    /// Moves past one byte; `at` never passes the end, so the sum cannot overflow.
    fn bump(&mut self) {
        self.at = self.at.saturating_add(1).min(self.bytes.len());
    }

    fn space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.bump();
        }
    }

    fn expect(&mut self, byte: u8, what: &'static str) -> Result<(), JsonError> {
        if self.peek() == Some(byte) {
            self.bump();
            Ok(())
        } else {
            Err(self.error(what))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, JsonError> {
        self.space();
        match self.peek() {
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => self.string().map(Json::String),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b't') => self.word("true", Json::Bool(true)),
            Some(b'f') => self.word("false", Json::Bool(false)),
            Some(b'n') => self.word("null", Json::Null),
            Some(_) => Err(self.error("expected a value")),
            None => Err(self.error("unexpected end of the text")),
        }
    }

    fn nest(&self, depth: usize) -> Result<usize, JsonError> {
        if depth >= MAX_DEPTH {
            return Err(self.error("nested too deep"));
        }
        Ok(depth.saturating_add(1))
    }

    fn object(&mut self, depth: usize) -> Result<Json, JsonError> {
        let what = "expected ',' or '}' in an object";
        self.sequence(depth, b'}', what, |reader, inner| {
            reader.space();
            if reader.peek() != Some(b'"') {
                return Err(reader.error("expected a string key"));
            }
            let key = reader.string()?;
            reader.space();
            reader.expect(b':', "expected ':' after a key")?;
            Ok((key, reader.value(inner)?))
        })
        .map(Json::Object)
    }

    fn array(&mut self, depth: usize) -> Result<Json, JsonError> {
        let what = "expected ',' or ']' in an array";
        self.sequence(depth, b']', what, |reader, inner| reader.value(inner))
            .map(Json::Array)
    }

    /// An array's items or an object's members: the opening bracket (at the cursor), `item`s
    /// separated by commas, then `close`; `item` reads one a level deeper than `depth`.
    fn sequence<T>(
        &mut self,
        depth: usize,
        close: u8,
        what: &'static str,
        mut item: impl FnMut(&mut Self, usize) -> Result<T, JsonError>,
    ) -> Result<Vec<T>, JsonError> {
        let inner = self.nest(depth)?;
        self.bump();
        let mut items = Vec::new();
        self.space();
        if self.peek() == Some(close) {
            self.bump();
            return Ok(items);
        }
        loop {
            items.push(item(self, inner)?);
            self.space();
            match self.peek() {
                Some(b',') => self.bump(),
                Some(byte) if byte == close => {
                    self.bump();
                    return Ok(items);
                }
                _ => return Err(self.error(what)),
            }
        }
    }

    fn word(&mut self, word: &'static str, value: Json) -> Result<Json, JsonError> {
        let end = self.at.saturating_add(word.len());
        if self.bytes.get(self.at..end) == Some(word.as_bytes()) {
            self.at = end;
            Ok(value)
        } else {
            Err(self.error("expected true, false or null"))
        }
    }

    /// A number as RFC 8259 writes it (no leading `+`, no bare `.5`, no `NaN`).
    fn number(&mut self) -> Result<Json, JsonError> {
        let start = self.at;
        if self.peek() == Some(b'-') {
            self.bump();
        }
        match self.peek() {
            Some(b'0') => self.bump(),
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.error("expected a digit")),
        }
        if self.peek() == Some(b'.') {
            self.bump();
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.error("expected a digit after '.'"));
            }
            self.digits();
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.bump();
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.bump();
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.error("expected a digit in the exponent"));
            }
            self.digits();
        }
        // Only ASCII digits, signs, '.' and 'e' were taken: always UTF-8, always an f64 lexeme.
        std::str::from_utf8(&self.bytes[start..self.at])
            .ok()
            .and_then(|text| text.parse::<f64>().ok())
            .map(Json::Number)
            .ok_or(JsonError {
                at: start,
                what: "not a number",
            })
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.bump();
        }
    }

    fn string(&mut self) -> Result<String, JsonError> {
        self.bump();
        let mut out = Vec::new();
        loop {
            let Some(byte) = self.peek() else {
                return Err(self.error("unterminated string"));
            };
            self.bump();
            match byte {
                b'"' => break,
                b'\\' => self.escape(&mut out)?,
                0..=0x1f => return Err(self.error("control character in a string")),
                _ => out.push(byte),
            }
        }
        // The input was a `&str` and escapes push whole UTF-8 sequences: the bytes are UTF-8.
        String::from_utf8(out).map_err(|_| self.error("string is not UTF-8"))
    }

    fn escape(&mut self, out: &mut Vec<u8>) -> Result<(), JsonError> {
        let Some(byte) = self.peek() else {
            return Err(self.error("unterminated escape"));
        };
        self.bump();
        let simple = match byte {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let c = self.unicode()?;
                let mut utf8 = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
                return Ok(());
            }
            _ => return Err(self.error("unknown escape")),
        };
        out.push(simple);
        Ok(())
    }

    /// The character after `\u`: four hex digits, or a surrogate pair of two such escapes.
    fn unicode(&mut self) -> Result<char, JsonError> {
        let first = self.hex4()?;
        let code = if (0xd800..0xdc00).contains(&first) {
            self.expect(b'\\', "expected a low surrogate")?;
            self.expect(b'u', "expected a low surrogate")?;
            let second = self.hex4()?;
            if !(0xdc00..0xe000).contains(&second) {
                return Err(self.error("expected a low surrogate"));
            }
            0x10000 | ((first & 0x3ff) << 10) | (second & 0x3ff)
        } else {
            first
        };
        char::from_u32(code).ok_or(self.error("not a character"))
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let mut value = 0u32;
        for _ in 0..4 {
            let digit = self
                .peek()
                .and_then(|b| char::from(b).to_digit(16))
                .ok_or(self.error("expected four hex digits"))?;
            self.bump();
            // Four hex digits are at most 0xffff: no overflow.
            value = (value << 4) | digit;
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse() {
        let json = Json::parse(
            r#" {"a": [1, -2.5e3, 0.25, true, false, null], "s": "x\"\\\/\n\u00e9\ud83d\ude00", "e": {}} "#,
        )
        .unwrap();
        let a = json.get("a").and_then(Json::as_array).unwrap();
        assert_eq!(a[0].as_f64(), Some(1.0));
        assert_eq!(a[1].as_f64(), Some(-2500.0));
        assert_eq!(a[2].as_f64(), Some(0.25));
        assert_eq!(a[3].as_bool(), Some(true));
        assert_eq!(a[5], Json::Null);
        assert_eq!(
            json.get("s"),
            Some(&Json::String("x\"\\/\n\u{e9}\u{1f600}".into()))
        );
        assert_eq!(json.get("e"), Some(&Json::Object(Vec::new())));
        assert_eq!(json.get("missing"), None);
    }

    #[test]
    fn bad_texts_are_errors_with_their_offset() {
        for (text, at) in [
            ("", 0),
            ("{", 1),
            ("{\"a\" 1}", 5),
            ("[1,]", 3),
            ("[1 2]", 3),
            ("01", 1),
            ("-", 1),
            ("1.", 2),
            ("1e", 2),
            ("+1", 0),
            ("\"abc", 4),
            ("\"\\x\"", 3),
            ("\"\\ud800\"", 7),
            ("tru", 0),
            ("{} x", 3),
            ("\"a\nb\"", 3),
        ] {
            let error = Json::parse(text).unwrap_err();
            assert_eq!(error.at, at, "{text:?}: {error}");
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(Json::parse(&ok).is_ok());
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert_eq!(Json::parse(&deep).unwrap_err().what, "nested too deep");
        // Far deeper than the stack would allow, were it not bounded.
        assert!(Json::parse(&"[".repeat(1_000_000)).is_err());
    }
}
