//! The pgoutput messages (protocol version 1) that carry changes: Relation, Insert,
//! Update, Delete, Truncate (Begin, Commit and logical messages are decoded by
//! `pgwire-replication` itself). Values arrive as text; an unchanged TOAST value arrives as
//! a marker, never as data.

use serde::{Deserialize, Serialize};

/// One column value of a row. Stored as a JSON string, `null` or `false` (read by hand:
/// serde's untagged enums buffer every value first, which a restore pays per value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Value {
    /// A value, as text.
    Text(String),
    /// SQL NULL (`null`), or an unchanged TOAST value (`false`): see [`Value::is_unchanged`].
    Marker(Option<bool>),
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Value;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string, null or a boolean")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Value, E> {
                Ok(Value::Text(v.to_string()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Value, E> {
                Ok(Value::Text(v))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Value, E> {
                Ok(Value::Marker(Some(v)))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Value, E> {
                Ok(Value::Marker(None))
            }
            fn visit_none<E: serde::de::Error>(self) -> Result<Value, E> {
                Ok(Value::Marker(None))
            }
            fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
                d.deserialize_any(V)
            }
        }
        d.deserialize_any(V)
    }
}

impl Value {
    pub const NULL: Value = Value::Marker(None);
    pub const UNCHANGED: Value = Value::Marker(Some(false));

    /// A TOAST value the update did not change: not sent, so not known here.
    pub fn is_unchanged(&self) -> bool {
        matches!(self, Value::Marker(Some(_)))
    }
}

/// A table as the stream describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relation {
    pub oid: u32,
    pub schema: String,
    pub name: String,
    /// `d` default (primary key), `n` nothing, `f` full, `i` index.
    pub identity: char,
    pub columns: Vec<Column>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    /// Part of the replica identity (the key an update or delete is found by).
    pub key: bool,
    pub type_oid: u32,
}

/// One change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Relation(Relation),
    Insert {
        rel: u32,
        new: Vec<Value>,
    },
    /// `old`: the whole old row (identity full) or only its key columns (`key_only`), when
    /// the key changed or the identity is full; else `None`.
    Update {
        rel: u32,
        old: Option<Vec<Value>>,
        key_only: bool,
        new: Vec<Value>,
    },
    Delete {
        rel: u32,
        old: Vec<Value>,
        key_only: bool,
    },
    Truncate {
        rels: Vec<u32>,
        cascade: bool,
        restart_identity: bool,
    },
    /// Something that changes no row (a type, an origin).
    Other,
}

#[derive(Debug, thiserror::Error)]
#[error("pgoutput: {0}")]
pub struct DecodeError(String);

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError(format!("message cut short (wanted {n} bytes)")));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn i16(&mut self) -> Result<i16, DecodeError> {
        Ok(i16::from_be_bytes(
            self.take(2)?.try_into().unwrap_or_default(),
        ))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(
            self.take(4)?.try_into().unwrap_or_default(),
        ))
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        let end = self
            .0
            .iter()
            .position(|b| *b == 0)
            .ok_or_else(|| DecodeError("a string without its end".into()))?;
        let s = String::from_utf8_lossy(&self.0[..end]).into_owned();
        self.0 = &self.0[end + 1..];
        Ok(s)
    }

    fn tuple(&mut self) -> Result<Vec<Value>, DecodeError> {
        let n = self.i16()?.max(0) as usize;
        let mut values = Vec::with_capacity(n);
        for _ in 0..n {
            values.push(match self.u8()? {
                b'n' => Value::NULL,
                b'u' => Value::UNCHANGED,
                b't' => {
                    let len = self.u32()? as usize;
                    Value::Text(String::from_utf8_lossy(self.take(len)?).into_owned())
                }
                b'b' => return Err(DecodeError("binary values are not asked for".into())),
                other => {
                    return Err(DecodeError(format!(
                        "unknown value kind `{}`",
                        other as char
                    )));
                }
            });
        }
        Ok(values)
    }
}

/// Decode one pgoutput message.
pub fn decode(data: &[u8]) -> Result<Change, DecodeError> {
    let mut r = Reader(data);
    let tag = r.u8()?;
    Ok(match tag {
        b'R' => {
            let oid = r.u32()?;
            let schema = r.string()?;
            let name = r.string()?;
            let identity = r.u8()? as char;
            let n = r.i16()?.max(0) as usize;
            let mut columns = Vec::with_capacity(n);
            for _ in 0..n {
                let flags = r.u8()?;
                let name = r.string()?;
                let type_oid = r.u32()?;
                let _typmod = r.u32()?;
                columns.push(Column {
                    name,
                    key: flags & 1 == 1,
                    type_oid,
                });
            }
            Change::Relation(Relation {
                oid,
                schema,
                name,
                identity,
                columns,
            })
        }
        b'I' => {
            let rel = r.u32()?;
            let _n = r.u8()?;
            Change::Insert {
                rel,
                new: r.tuple()?,
            }
        }
        b'U' => {
            let rel = r.u32()?;
            let (mut old, mut key_only) = (None, false);
            let mut marker = r.u8()?;
            if marker == b'K' || marker == b'O' {
                key_only = marker == b'K';
                old = Some(r.tuple()?);
                marker = r.u8()?;
            }
            if marker != b'N' {
                return Err(DecodeError("an update without its new row".into()));
            }
            Change::Update {
                rel,
                old,
                key_only,
                new: r.tuple()?,
            }
        }
        b'D' => {
            let rel = r.u32()?;
            let key_only = r.u8()? == b'K';
            Change::Delete {
                rel,
                old: r.tuple()?,
                key_only,
            }
        }
        b'T' => {
            let n = r.u32()? as usize;
            let options = r.u8()?;
            let rels = (0..n).map(|_| r.u32()).collect::<Result<_, _>>()?;
            Change::Truncate {
                rels,
                cascade: options & 1 == 1,
                restart_identity: options & 2 == 2,
            }
        }
        b'Y' | b'O' => Change::Other,
        other => {
            return Err(DecodeError(format!(
                "unexpected message `{}`",
                other as char
            )));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_back_as_written_also_inside_a_change() {
        let values = vec![
            Value::Text("a\"b".into()),
            Value::Text(String::new()),
            Value::NULL,
            Value::UNCHANGED,
            Value::Marker(Some(true)),
        ];
        let json = serde_json::to_string(&values).unwrap();
        assert_eq!(json, r#"["a\"b","",null,false,true]"#);
        assert_eq!(serde_json::from_str::<Vec<Value>>(&json).unwrap(), values);
        let op = crate::cdc::apply::Op::Ins {
            rel: 7,
            new: values.clone(),
        };
        let line = serde_json::to_string(&op).unwrap();
        assert_eq!(
            serde_json::from_str::<crate::cdc::apply::Op>(&line).unwrap(),
            op
        );
        assert!(serde_json::from_str::<Value>("3").is_err());
    }

    fn tuple(values: &[Option<&str>]) -> Vec<u8> {
        let mut b = (values.len() as i16).to_be_bytes().to_vec();
        for v in values {
            match v {
                None => b.push(b'n'),
                Some("<u>") => b.push(b'u'),
                Some(t) => {
                    b.push(b't');
                    b.extend((t.len() as u32).to_be_bytes());
                    b.extend(t.as_bytes());
                }
            }
        }
        b
    }

    #[test]
    fn relations_rows_and_markers_are_decoded() {
        let mut rel = vec![b'R'];
        rel.extend(16384u32.to_be_bytes());
        rel.extend(b"public\0accounts\0d");
        rel.extend(2i16.to_be_bytes());
        rel.extend(b"\x01id\0");
        rel.extend(23u32.to_be_bytes());
        rel.extend((-1i32).to_be_bytes());
        rel.extend(b"\x00note\0");
        rel.extend(25u32.to_be_bytes());
        rel.extend((-1i32).to_be_bytes());
        let Change::Relation(r) = decode(&rel).unwrap() else {
            panic!("not a relation")
        };
        assert_eq!(
            (r.schema.as_str(), r.name.as_str(), r.identity),
            ("public", "accounts", 'd')
        );
        assert!(r.columns[0].key && !r.columns[1].key);

        let mut upd = vec![b'U'];
        upd.extend(16384u32.to_be_bytes());
        upd.push(b'N');
        upd.extend(tuple(&[Some("7"), Some("<u>")]));
        assert_eq!(
            decode(&upd).unwrap(),
            Change::Update {
                rel: 16384,
                old: None,
                key_only: false,
                new: vec![Value::Text("7".into()), Value::UNCHANGED]
            }
        );
        let mut del = vec![b'D'];
        del.extend(16384u32.to_be_bytes());
        del.push(b'K');
        del.extend(tuple(&[Some("7"), None]));
        assert_eq!(
            decode(&del).unwrap(),
            Change::Delete {
                rel: 16384,
                old: vec![Value::Text("7".into()), Value::NULL],
                key_only: true
            }
        );
        // As stored: text, null, unchanged.
        let json = serde_json::to_string(&[Value::Text("x".into()), Value::NULL, Value::UNCHANGED])
            .unwrap();
        assert_eq!(json, r#"["x",null,false]"#);
        let back: Vec<Value> = serde_json::from_str(&json).unwrap();
        assert!(back[2].is_unchanged() && !back[1].is_unchanged());
        assert!(decode(&[b'I', 0, 0]).is_err());
    }
}
