//! The protobuf wire format: varints, fixed-width values and length-delimited
//! records, read without trusting any length the input claims.
//!
//! Upstream counterpart: the `Unmarshal` methods go-to-protobuf generates for
//! every Kubernetes type (k8s.io/api/*/generated.pb.go), which walk the same
//! (tag, wire type, value) records and reject truncated or overflowing input.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum WireError {
    #[error("input ends inside a {0}")]
    Truncated(&'static str),
    #[error("varint longer than 10 bytes")]
    VarintOverflow,
    #[error("field number 0 is invalid")]
    ZeroField,
    #[error("field number {0} is out of range")]
    FieldOutOfRange(u64),
    #[error("unsupported wire type {0}")]
    WireType(u8),
    #[error("length {0} exceeds the remaining input")]
    Length(u64),
}

/// How a value is laid out on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireType {
    Varint,
    Fixed64,
    Len,
    Fixed32,
}

impl WireType {
    pub fn name(self) -> &'static str {
        match self {
            WireType::Varint => "varint",
            WireType::Fixed64 => "fixed64",
            WireType::Len => "length-delimited",
            WireType::Fixed32 => "fixed32",
        }
    }
}

/// One record of a message: its field number and raw value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    Len(&'a [u8]),
    Fixed32(u32),
}

impl Value<'_> {
    pub fn wire_type(&self) -> WireType {
        match self {
            Value::Varint(_) => WireType::Varint,
            Value::Fixed64(_) => WireType::Fixed64,
            Value::Len(_) => WireType::Len,
            Value::Fixed32(_) => WireType::Fixed32,
        }
    }
}

/// Iterates over the records of one message. After the first error the
/// iterator is exhausted.
pub struct Records<'a> {
    input: &'a [u8],
    failed: bool,
}

pub fn records(input: &[u8]) -> Records<'_> {
    Records {
        input,
        failed: false,
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<(u32, Value<'a>), WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.input.is_empty() || self.failed {
            return None;
        }
        let record = self.read_record();
        self.failed = record.is_err();
        Some(record)
    }
}

impl<'a> Records<'a> {
    fn read_record(&mut self) -> Result<(u32, Value<'a>), WireError> {
        let key = read_varint(&mut self.input)?;
        let field = key >> 3;
        if field == 0 {
            return Err(WireError::ZeroField);
        }
        // Protobuf field numbers are at most 2^29 - 1.
        let field = u32::try_from(field)
            .ok()
            .filter(|f| *f < (1 << 29))
            .ok_or(WireError::FieldOutOfRange(field))?;
        let value = match key & 7 {
            0 => Value::Varint(read_varint(&mut self.input)?),
            1 => Value::Fixed64(u64::from_le_bytes(self.take_array("fixed64")?)),
            2 => {
                let len = read_varint(&mut self.input)?;
                let len_usize = usize::try_from(len).map_err(|_| WireError::Length(len))?;
                if len_usize > self.input.len() {
                    return Err(WireError::Length(len));
                }
                let (bytes, rest) = self.input.split_at(len_usize);
                self.input = rest;
                Value::Len(bytes)
            }
            5 => Value::Fixed32(u32::from_le_bytes(self.take_array("fixed32")?)),
            // Groups (3, 4) are not used by any Kubernetes message.
            other => return Err(WireError::WireType(other as u8)),
        };
        Ok((field, value))
    }

    fn take_array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], WireError> {
        let bytes = self
            .input
            .get(..N)
            .and_then(|b| <[u8; N]>::try_from(b).ok())
            .ok_or(WireError::Truncated(what))?;
        self.input = &self.input[N..];
        Ok(bytes)
    }
}

/// Reads one base-128 varint and advances `input` past it.
pub fn read_varint(input: &mut &[u8]) -> Result<u64, WireError> {
    let mut value = 0u64;
    for i in 0..10 {
        let Some((&byte, rest)) = input.split_first() else {
            return Err(WireError::Truncated("varint"));
        };
        *input = rest;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(WireError::VarintOverflow)
}

/// The varints of a packed repeated field.
pub fn packed_varints(mut input: &[u8]) -> Result<Vec<u64>, WireError> {
    let mut values = Vec::new();
    while !input.is_empty() {
        values.push(read_varint(&mut input)?);
    }
    Ok(values)
}

/// The fixed64 values of a packed repeated field.
pub fn packed_fixed64(input: &[u8]) -> Result<Vec<u64>, WireError> {
    if !input.len().is_multiple_of(8) {
        return Err(WireError::Truncated("packed fixed64"));
    }
    Ok(input
        .chunks_exact(8)
        .map(|c| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(c);
            u64::from_le_bytes(bytes)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(input: &[u8]) -> Result<Vec<(u32, Value<'_>)>, WireError> {
        records(input).collect()
    }

    #[test]
    fn reads_each_wire_type() {
        let input = [
            0x08, 0x96, 0x01, // 1: varint 150
            0x12, 0x02, b'h', b'i', // 2: "hi"
            0x19, 1, 0, 0, 0, 0, 0, 0, 0, // 3: fixed64 1
            0x25, 2, 0, 0, 0, // 4: fixed32 2
        ];
        assert_eq!(
            all(&input).unwrap(),
            vec![
                (1, Value::Varint(150)),
                (2, Value::Len(b"hi")),
                (3, Value::Fixed64(1)),
                (4, Value::Fixed32(2)),
            ]
        );
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(all(&[0x08]), Err(WireError::Truncated("varint")));
        assert_eq!(all(&[0x12, 0x05, b'a']), Err(WireError::Length(5)));
        assert_eq!(all(&[0x00, 0x01]), Err(WireError::ZeroField));
        assert_eq!(all(&[0x0b]), Err(WireError::WireType(3)));
        assert_eq!(all(&[0x19, 1, 2]), Err(WireError::Truncated("fixed64")));
        assert_eq!(
            all(&[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
            Err(WireError::VarintOverflow)
        );
        // A length that would overflow usize on 32-bit and exceeds input here.
        assert_eq!(
            all(&[0x12, 0xff, 0xff, 0xff, 0xff, 0x0f]),
            Err(WireError::Length(0xffff_ffff))
        );
    }

    #[test]
    fn packed_values() {
        assert_eq!(packed_varints(&[1, 0x96, 0x01]).unwrap(), vec![1, 150]);
        assert_eq!(packed_varints(&[0x96]), Err(WireError::Truncated("varint")));
        assert_eq!(
            packed_fixed64(&[0; 7]),
            Err(WireError::Truncated("packed fixed64"))
        );
    }
}
