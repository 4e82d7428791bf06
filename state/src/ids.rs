//! Opaque ids that sort by creation time: `pi_` / `evt_` followed by 10
//! Crockford base32 digits of milliseconds and 16 of randomness (ULID-like),
//! so listing newest-first is a reverse scan of the id order.

use chrono::{DateTime, Utc};

const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

pub fn new_id(prefix: &str, now: DateTime<Utc>) -> String {
    let millis = u128::try_from(now.timestamp_millis().max(0)).unwrap_or(0);
    let mut random = [0u8; 10];
    // The OS random source failing is not something to continue through
    // silently: fall back to time bits only would risk collisions.
    getrandom::fill(&mut random).expect("OS random source is unavailable");
    let mut value: u128 = millis << 80;
    for (i, b) in random.iter().enumerate() {
        value |= u128::from(*b) << (8 * (9 - i));
    }
    encode(prefix, value)
}

fn encode(prefix: &str, value: u128) -> String {
    let mut out = String::with_capacity(prefix.len() + 26);
    out.push_str(prefix);
    for i in (0..26).rev() {
        out.push(ALPHABET[((value >> (5 * i)) & 31) as usize] as char);
    }
    out
}

/// The smallest id `new_id` can make at `at` (and later): ids made before
/// `at` sort below it, so a time range is an id range.
pub fn id_floor(prefix: &str, at: DateTime<Utc>) -> String {
    let millis = u128::try_from(at.timestamp_millis().max(0)).unwrap_or(0);
    encode(prefix, millis << 80)
}

/// An unguessable token for a public URL: 160 random bits in 32
/// Crockford base32 digits.
pub fn secret_token() -> String {
    let mut random = [0u8; 20];
    getrandom::fill(&mut random).expect("OS random source is unavailable");
    let mut out = String::with_capacity(32);
    let (mut acc, mut bits) = (0u32, 0);
    for b in random {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
    }
    out
}

/// A uniformly random u32, for destination tags (unpredictable, per the XRPL
/// docs' advice, rather than sequential).
pub fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).expect("OS random source is unavailable");
    u32::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::unwrap_used)]
    fn ids_sort_by_time_and_do_not_collide() {
        let t = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let a = new_id("pi_", t);
        let b = new_id("pi_", t + chrono::Duration::milliseconds(1));
        assert!(a < b);
        assert_eq!(a.len(), 29);
        assert!(a.starts_with("pi_"));
        assert!(id_floor("pi_", t) <= a && a < id_floor("pi_", t + chrono::Duration::milliseconds(1)));
        assert!(b >= id_floor("pi_", t + chrono::Duration::milliseconds(1)));
        let many: std::collections::HashSet<String> = (0..10_000).map(|_| new_id("pi_", t)).collect();
        let token = secret_token();
        assert_eq!(token.len(), 32);
        assert!(token.bytes().all(|b| ALPHABET.contains(&b)));
        assert_eq!(many.len(), 10_000);
    }
}
