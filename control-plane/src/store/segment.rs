//! The stored form of a decision log segment (timeline.rs).

use super::StoreError;

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
/// [entry len u32][entry JSON]`, integers little endian.
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
        out.extend_from_slice(&(r.key.len() as u32).to_le_bytes());
        out.extend_from_slice(&r.key);
        out.extend_from_slice(&r.prev.to_le_bytes());
        out.extend_from_slice(&(r.entry.len() as u32).to_le_bytes());
        out.extend_from_slice(&r.entry);
    }
    out
}

pub fn decode(raw: &[u8]) -> Result<Segment, StoreError> {
    fn take<'a>(raw: &mut &'a [u8], n: usize) -> Result<&'a [u8], StoreError> {
        let (head, rest) = raw.split_at_checked(n).ok_or(StoreError::Truncated)?;
        *raw = rest;
        Ok(head)
    }
    fn u32_of(raw: &mut &[u8]) -> Result<usize, StoreError> {
        let b = take(raw, 4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }
    if raw.first() != Some(&FORMAT) {
        return Err(StoreError::Truncated);
    }
    let newest_ms = newest_ms(raw)?;
    let mut rest = &raw[9..];
    let mut records = Vec::new();
    while !rest.is_empty() {
        let n = u32_of(&mut rest)?;
        let key = take(&mut rest, n)?.to_vec();
        let b = take(&mut rest, 8)?;
        let prev = u64::from_le_bytes(b.try_into().map_err(|_| StoreError::Truncated)?);
        let n = u32_of(&mut rest)?;
        let entry = take(&mut rest, n)?.to_vec();
        records.push(Record { key, prev, entry });
    }
    Ok(Segment { newest_ms, records })
}
