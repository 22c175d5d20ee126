//! PostgreSQL binary COPY encoding for bulk loads (imports): far cheaper than row-by-row INSERTs.
//! Format: <https://www.postgresql.org/docs/current/sql-copy.html> ("Binary Format").

use chrono::{DateTime, TimeZone, Utc};
use uuid::Uuid;

pub struct CopyBuf {
    buf: Vec<u8>,
}

fn pg_epoch() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).single().unwrap_or_default()
}

impl CopyBuf {
    pub fn with_capacity(n: usize) -> Self {
        let mut buf = Vec::with_capacity(n + 19);
        buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        buf.extend_from_slice(&0i32.to_be_bytes()); // flags
        buf.extend_from_slice(&0i32.to_be_bytes()); // header extension length
        CopyBuf { buf }
    }

    pub fn row(&mut self, fields: i16) -> &mut Self {
        self.buf.extend_from_slice(&fields.to_be_bytes());
        self
    }

    fn field(&mut self, bytes: Option<&[u8]>) -> &mut Self {
        match bytes {
            None => self.buf.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(b) => {
                self.buf.extend_from_slice(&(b.len() as i32).to_be_bytes());
                self.buf.extend_from_slice(b);
            }
        }
        self
    }

    pub fn uuid(&mut self, u: Uuid) -> &mut Self {
        self.field(Some(u.as_bytes()))
    }

    pub fn bytea(&mut self, b: Option<&[u8]>) -> &mut Self {
        self.field(b)
    }

    pub fn text(&mut self, s: Option<&str>) -> &mut Self {
        self.field(s.map(str::as_bytes))
    }

    pub fn int8(&mut self, v: i64) -> &mut Self {
        self.field(Some(&v.to_be_bytes()))
    }

    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.field(Some(&[u8::from(v)]))
    }

    /// jsonb: a version byte (1) then the JSON text.
    pub fn jsonb(&mut self, json: &str) -> &mut Self {
        self.buf.extend_from_slice(&((json.len() + 1) as i32).to_be_bytes());
        self.buf.push(1);
        self.buf.extend_from_slice(json.as_bytes());
        self
    }

    /// timestamptz: microseconds since 2000-01-01 UTC.
    pub fn timestamptz(&mut self, t: DateTime<Utc>) -> &mut Self {
        let micros = (t - pg_epoch()).num_microseconds().unwrap_or(0);
        self.field(Some(&micros.to_be_bytes()))
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
        self.buf
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.len() <= 19
    }
}
