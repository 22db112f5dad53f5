//! A bounds check of a Parquet file's footer, before Polars decodes it.
//!
//! Why: Polars' Thrift decoder trusts the lengths a file states. A list
//! that claims billions of elements becomes one huge allocation, which
//! aborts the process (an allocation failure cannot be caught), and a
//! corrupt file must be an error, not a crash (found by fuzzing; the
//! inputs are in `fuzz/regressions/import_parquet/`). This walks the
//! footer's Thrift compact encoding without building anything, and refuses
//! a footer whose lengths do not fit in the bytes that follow them, that
//! nests implausibly deep, or that is implausibly large.
//!
//! Polars' decoder also picks a field's reader by its id alone, so a field
//! whose wire type disagrees with Parquet's declaration (an `i32` where a
//! list belongs) is read as the declared type from the wrong bytes. The
//! walk therefore knows the declared types of the fields Polars reads
//! ([`FILE_METADATA`] and the structs below it, from `parquet.thrift`) and
//! refuses a disagreeing wire type; every other field is walked by its
//! wire type alone, still bounds-checked.

/// The largest footer accepted: real ones are kilobytes to a few megabytes.
pub const MAX_FOOTER_BYTES: usize = 64 << 20;
/// The most elements a list, set or map may claim: bounds what the decoder
/// pre-allocates (row groups × columns of real files stay far below).
pub const MAX_ELEMENTS: u64 = 1 << 20;
/// Deepest nesting of structs and collections accepted (Parquet's own
/// metadata nests about five deep; the bound keeps recursion shallow).
pub const MAX_DEPTH: usize = 64;

const MAGIC: &[u8; 4] = b"PAR1";

/// A field's declared type.
#[derive(Debug, Clone, Copy)]
enum Ty {
    Bool,
    I16,
    I32,
    I64,
    Binary,
    List(&'static Ty),
    Struct(Fields),
}

/// A struct's declared fields by id.
type Fields = &'static [(i16, Ty)];

const KEY_VALUE: Fields = &[(1, Ty::Binary), (2, Ty::Binary)];
const SORTING_COLUMN: Fields = &[(1, Ty::I32), (2, Ty::Bool), (3, Ty::Bool)];
const PAGE_ENCODING_STATS: Fields = &[(1, Ty::I32), (2, Ty::I32), (3, Ty::I32)];
const STATISTICS: Fields = &[
    (1, Ty::Binary),
    (2, Ty::Binary),
    (3, Ty::I64),
    (4, Ty::I64),
    (5, Ty::Binary),
    (6, Ty::Binary),
    (7, Ty::Bool),
    (8, Ty::Bool),
];
const COLUMN_META_DATA: Fields = &[
    (1, Ty::I32),
    (2, Ty::List(&Ty::I32)),
    (3, Ty::List(&Ty::Binary)),
    (4, Ty::I32),
    (5, Ty::I64),
    (6, Ty::I64),
    (7, Ty::I64),
    (8, Ty::List(&Ty::Struct(KEY_VALUE))),
    (9, Ty::I64),
    (10, Ty::I64),
    (11, Ty::I64),
    (12, Ty::Struct(STATISTICS)),
    (13, Ty::List(&Ty::Struct(PAGE_ENCODING_STATS))),
    (14, Ty::I64),
    (15, Ty::I32),
];
const COLUMN_CHUNK: Fields = &[
    (1, Ty::Binary),
    (2, Ty::I64),
    (3, Ty::Struct(COLUMN_META_DATA)),
    (4, Ty::I64),
    (5, Ty::I32),
    (6, Ty::I64),
    (7, Ty::I32),
    (9, Ty::Binary),
];
const ROW_GROUP: Fields = &[
    (1, Ty::List(&Ty::Struct(COLUMN_CHUNK))),
    (2, Ty::I64),
    (3, Ty::I64),
    (4, Ty::List(&Ty::Struct(SORTING_COLUMN))),
    (5, Ty::I64),
    (6, Ty::I64),
    (7, Ty::I16),
];
const SCHEMA_ELEMENT: Fields = &[
    (1, Ty::I32),
    (2, Ty::I32),
    (3, Ty::I32),
    (4, Ty::Binary),
    (5, Ty::I32),
    (6, Ty::I32),
    (7, Ty::I32),
    (8, Ty::I32),
    (9, Ty::I32),
];
/// Parquet's `FileMetaData`, as far as the declared types are checked.
const FILE_METADATA: Fields = &[
    (1, Ty::I32),
    (2, Ty::List(&Ty::Struct(SCHEMA_ELEMENT))),
    (3, Ty::I64),
    (4, Ty::List(&Ty::Struct(ROW_GROUP))),
    (5, Ty::List(&Ty::Struct(KEY_VALUE))),
    (6, Ty::Binary),
    (9, Ty::Binary),
];

impl Ty {
    /// Whether Thrift compact wire type `t` encodes this type.
    fn is(self, t: u8) -> bool {
        match self {
            Ty::Bool => t == 1 || t == 2,
            Ty::I16 => t == 4,
            Ty::I32 => t == 5,
            Ty::I64 => t == 6,
            Ty::Binary => t == 8,
            Ty::List(_) => t == 9,
            Ty::Struct(_) => t == 12,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Ty::Bool => "bool",
            Ty::I16 => "i16",
            Ty::I32 => "i32",
            Ty::I64 => "i64",
            Ty::Binary => "binary",
            Ty::List(_) => "list",
            Ty::Struct(_) => "struct",
        }
    }
}

/// The footer's length from a file's first 4 and last 8 bytes, checked
/// against the file's length and [`MAX_FOOTER_BYTES`]. The footer is the
/// `len` bytes before the last 8.
/// (A file shorter than 12 bytes is refused whatever `head` and `tail` hold.)
pub fn footer_len(file_len: u64, head: &[u8; 4], tail: &[u8; 8]) -> Result<usize, String> {
    if file_len < 12 {
        return Err("it is too short to be a Parquet file".into());
    }
    if head != MAGIC || &tail[4..] != MAGIC {
        return Err("it does not start and end with the Parquet magic bytes".into());
    }
    let len = u32::from_le_bytes(tail[..4].try_into().expect("4 bytes")) as usize;
    if len as u64 > file_len - 12 {
        return Err(format!("its footer claims {len} bytes of a {file_len}-byte file"));
    }
    if len > MAX_FOOTER_BYTES {
        return Err(format!("its footer is {len} bytes (at most {MAX_FOOTER_BYTES} are accepted)"));
    }
    Ok(len)
}

/// Walks the footer's Thrift encoding; `Err` says what is wrong and where.
pub fn check_footer(footer: &[u8]) -> Result<(), String> {
    let mut w = Walk { b: footer, at: 0 };
    w.structure(0, Some(FILE_METADATA))
        .map_err(|e| format!("its footer is malformed at byte {} of {}: {e}", w.at, footer.len()))
}

struct Walk<'a> {
    b: &'a [u8],
    at: usize,
}

impl Walk<'_> {
    fn remaining(&self) -> usize {
        self.b.len() - self.at
    }

    fn byte(&mut self) -> Result<u8, String> {
        let x = *self.b.get(self.at).ok_or("it ends in the middle of a value")?;
        self.at += 1;
        Ok(x)
    }

    fn skip(&mut self, n: u64) -> Result<(), String> {
        if n > self.remaining() as u64 {
            return Err(format!("a value claims {n} bytes where {} remain", self.remaining()));
        }
        self.at += n as usize;
        Ok(())
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut x = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.byte()?;
            x |= u64::from(b & 0x7f) << shift.min(63);
            if b & 0x80 == 0 {
                return Ok(x);
            }
        }
        Err("a varint is longer than 10 bytes".into())
    }

    /// Claims `n` elements of at least one byte each.
    fn elements(&self, n: u64) -> Result<(), String> {
        if n > MAX_ELEMENTS {
            return Err(format!("a collection claims {n} elements (at most {MAX_ELEMENTS} are accepted)"));
        }
        if n > self.remaining() as u64 {
            return Err(format!("a collection claims {n} elements where {} bytes remain", self.remaining()));
        }
        Ok(())
    }

    /// A struct; `fields` are its declared ones, when known.
    /// Depth is checked by [`Walk::value`], the one way in below the top.
    fn structure(&mut self, depth: usize, fields: Option<Fields>) -> Result<(), String> {
        let mut id = 0i64;
        loop {
            let h = self.byte()?;
            if h == 0 {
                return Ok(());
            }
            id = match h >> 4 {
                0 => {
                    let z = self.varint()?;
                    (z >> 1) as i64 ^ -((z & 1) as i64)
                }
                delta => id + i64::from(delta),
            };
            let t = h & 0x0f;
            let declared = fields.and_then(|f| f.iter().find(|(i, _)| i64::from(*i) == id)).map(|(_, ty)| *ty);
            if let Some(ty) = declared
                && !ty.is(t)
            {
                return Err(format!("field {id} is declared {} but encoded as Thrift type {t}", ty.name()));
            }
            match t {
                // Booleans carry their value in the type.
                1 | 2 => {}
                t => self.value(t, depth + 1, declared)?,
            }
        }
    }

    /// A value of wire type `t`; `declared` is its declared type, when known
    /// (and already checked to agree with `t`).
    fn value(&mut self, t: u8, depth: usize, declared: Option<Ty>) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!("it nests deeper than {MAX_DEPTH}"));
        }
        match t {
            // A boolean inside a collection takes one byte.
            1..=3 => self.skip(1),
            4..=6 => self.varint().map(|_| ()),
            7 => self.skip(8),
            8 => {
                let n = self.varint()?;
                self.skip(n)
            }
            9 | 10 => {
                let h = self.byte()?;
                let n = match h >> 4 {
                    15 => self.varint()?,
                    n => u64::from(n),
                };
                let element = match declared {
                    Some(Ty::List(e)) => Some(*e),
                    _ => None,
                };
                if let Some(e) = element
                    && n > 0
                    && !e.is(h & 0x0f)
                {
                    return Err(format!(
                        "a list is declared of {} but its elements are encoded as Thrift type {}",
                        e.name(),
                        h & 0x0f
                    ));
                }
                self.elements(n)?;
                for _ in 0..n {
                    self.value(h & 0x0f, depth + 1, element)?;
                }
                Ok(())
            }
            11 => {
                let n = self.varint()?;
                if n == 0 {
                    return Ok(());
                }
                self.elements(n)?;
                let kv = self.byte()?;
                for _ in 0..n {
                    self.value(kv >> 4, depth + 1, None)?;
                    self.value(kv & 0x0f, depth + 1, None)?;
                }
                Ok(())
            }
            12 => self.structure(
                depth,
                match declared {
                    Some(Ty::Struct(f)) => Some(f),
                    _ => None,
                },
            ),
            t => Err(format!("unknown Thrift type {t}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks a whole file in memory, as the importer does from disk.
    fn check(file: &[u8]) -> Result<(), String> {
        let n = file.len();
        let (mut head, mut tail) = ([0u8; 4], [0u8; 8]);
        if n >= 12 {
            head.copy_from_slice(&file[..4]);
            tail.copy_from_slice(&file[n - 8..]);
        }
        let len = footer_len(n as u64, &head, &tail)?;
        check_footer(&file[n - 8 - len..n - 8])
    }

    /// A file around `footer`: magic, footer, its length, magic.
    fn file(footer: &[u8]) -> Vec<u8> {
        let mut f = MAGIC.to_vec();
        f.extend_from_slice(footer);
        f.extend_from_slice(&(footer.len() as u32).to_le_bytes());
        f.extend_from_slice(MAGIC);
        f
    }

    #[test]
    fn a_well_formed_footer_passes() {
        // FileMetaData { 1: version i32 2, 2: schema [SchemaElement { 4: name "ab" }],
        // 3: num_rows i64 0, then unknown 15: bool true, 16: map<i32,i32>{} } STOP
        let footer = [0x15, 0x04, 0x19, 0x1c, 0x48, 0x02, b'a', b'b', 0x00, 0x16, 0x00, 0xc1, 0x1b, 0x00, 0x00];
        assert_eq!(check(&file(&footer)), Ok(()));
        // Every real Parquet file the tests write passes too (see the importer's tests).
    }

    #[test]
    fn lengths_beyond_the_bytes_are_refused() {
        // A list that claims 2^33 elements (the allocation bomb), at an
        // unknown field (id 16) so only its length is judged.
        let bomb = [0x09, 0x20, 0xfc, 0x80, 0x80, 0x80, 0x80, 0x20, 0x00];
        let e = check(&file(&bomb)).unwrap_err();
        assert!(e.contains("claims 8589934592 elements"), "{e}");
        // A list of 100 elements with 3 bytes left.
        let e = check(&file(&[0x29, 0xfc, 0x64, 0x00, 0x00, 0x00])).unwrap_err();
        assert!(e.contains("claims 100 elements where 3 bytes remain"), "{e}");
        // A binary longer than what follows.
        let e = check(&file(&[0x68, 0x7f, 0x00])).unwrap_err();
        assert!(e.contains("claims 127 bytes"), "{e}");
        // A footer longer than the file.
        let mut f = file(&[0x00]);
        let n = f.len();
        f[n - 8..n - 4].copy_from_slice(&1000u32.to_le_bytes());
        assert!(check(&f).unwrap_err().contains("claims 1000 bytes of a 13-byte file"));
        // No magic.
        assert!(check(b"not a parquet file").unwrap_err().contains("magic"));
        assert!(check(b"PAR1").unwrap_err().contains("too short"));
        // Truncated inside a varint, and an unknown type.
        assert!(check(&file(&[0x15, 0x80])).unwrap_err().contains("ends in the middle"));
        assert!(check(&file(&[0xfd, 0x00])).unwrap_err().contains("unknown Thrift type 13"));
    }

    #[test]
    fn a_wire_type_that_disagrees_with_parquet_is_refused() {
        // FileMetaData field 2 (schema, a list) encoded as an i32: Polars
        // would read a list header out of the integer's bytes.
        let e = check(&file(&[0x15, 0x02, 0x15, 0x04, 0x00])).unwrap_err();
        assert!(e.contains("field 2 is declared list but encoded as Thrift type 5"), "{e}");
        // A schema list of i32s instead of structs.
        let e = check(&file(&[0x29, 0x15, 0x02, 0x00])).unwrap_err();
        assert!(e.contains("declared of struct but its elements are encoded as Thrift type 5"), "{e}");
        // Long-form field ids (zigzag) are followed: id 4 (row_groups) as a binary.
        let e = check(&file(&[0x08, 0x08, 0x00, 0x00])).unwrap_err();
        assert!(e.contains("field 4 is declared list but encoded as Thrift type 8"), "{e}");
    }

    #[test]
    fn deep_nesting_is_refused_without_deep_recursion() {
        // 10,000 nested structs: refused at MAX_DEPTH, long before the stack ends.
        let mut footer = vec![0xfc; 10_000];
        footer.extend(std::iter::repeat_n(0x00, 10_001));
        let e = check(&file(&footer)).unwrap_err();
        assert!(e.contains("nests deeper than 64"), "{e}");
    }
}
