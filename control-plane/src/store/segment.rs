//! The stored form of a decision log segment (timeline.rs).

use super::{
    StoreError,
    codec::{self, Reader},
};

/// First byte of a stored segment.
const FORMAT: u8 = 1;

/// One decision record of a conversation.
pub struct Record {
    /// The conversation's session key.
    pub key: Vec<u8>,
    /// Segment of the conversation's record before this one (0: none).
    pub prev: u64,
    /// The [`super::DecisionEntry`] as JSON: a segment is read and rewritten
    /// without parsing the records of other conversations.
    pub entry: Vec<u8>,
}

/// Up to `SEGMENT_RECORDS` records, in arrival order: one sled key.
#[derive(Default)]
pub struct Segment {
    /// Newest `at_ms` of its records (retention).
    pub newest_ms: u64,
    pub records: Vec<Record>,
}

/// A segment's number from its key.
pub fn seq_of(k: &[u8]) -> Result<u64, StoreError> {
    Ok(u64::from_be_bytes(
        k.try_into().map_err(|_| StoreError::Truncated)?,
    ))
}

/// A stored segment's `newest_ms`, without decoding the rest.
pub fn newest_ms(raw: &[u8]) -> Result<u64, StoreError> {
    raw.get(1..9)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .ok_or(StoreError::Truncated)
}

/// `[FORMAT][newest_ms]`, then per record `[key len u32][key][prev u64]
/// [entry len u32][entry JSON]`, integers little endian (codec.rs writes
/// and reads the parts).
pub fn encode(s: &Segment) -> Vec<u8> {
    let size: usize = s
        .records
        .iter()
        .map(|r| 16 + r.key.len() + r.entry.len())
        .sum();
    let mut out = Vec::with_capacity(9 + size);
    out.push(FORMAT);
    out.extend_from_slice(&s.newest_ms.to_le_bytes());
    for r in &s.records {
        codec::bytes(&mut out, &r.key);
        out.extend_from_slice(&r.prev.to_le_bytes());
        codec::bytes(&mut out, &r.entry);
    }
    out
}

pub fn decode(raw: &[u8]) -> Result<Segment, StoreError> {
    if raw.first() != Some(&FORMAT) {
        return Err(StoreError::Truncated);
    }
    let newest_ms = newest_ms(raw)?;
    let mut r = Reader(&raw[9..]);
    let mut records = Vec::new();
    while !r.is_empty() {
        records.push(record(&mut r).ok_or(StoreError::Truncated)?);
    }
    Ok(Segment { newest_ms, records })
}

fn record(r: &mut Reader<'_>) -> Option<Record> {
    Some(Record {
        key: r.bytes()?.to_vec(),
        prev: r.u64()?,
        entry: r.bytes()?.to_vec(),
    })
}
