//! Tron addresses: base58check with the 0x41 prefix, or the same 21 bytes
//! in hex.

use crate::address::AddressError;

/// Parses a Tron address in base58 (`T...`) or hex (`41...`, `0x...`) form;
/// returns the 20-byte account and the canonical base58 form.
pub fn parse_tron_address(text: &str) -> Result<([u8; 20], String), AddressError> {
    let t = text.trim();
    let invalid = || AddressError::Invalid(text.to_string(), "Tron");
    let account: [u8; 20] = if t.starts_with('T') {
        let data = bs58::decode(t)
            .with_check(Some(0x41))
            .into_vec()
            .map_err(|_| invalid())?;
        data.get(1..).and_then(|a| a.try_into().ok()).ok_or_else(invalid)?
    } else {
        let hex_part = t
            .strip_prefix("0x")
            .or_else(|| t.strip_prefix("41").filter(|h| h.len() == 40))
            .ok_or_else(invalid)?;
        hex::decode(hex_part)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(invalid)?
    };
    Ok((account, base58_of(&account)))
}

/// The base58 form of a 20-byte account.
pub fn base58_of(account: &[u8; 20]) -> String {
    let mut payload = vec![0x41];
    payload.extend_from_slice(account);
    bs58::encode(payload).with_check().into_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tron::USDT_TRC20_CONTRACT;

    #[test]
    fn usdt_contract_base58_and_hex_are_one_address() {
        let (bytes, canonical) = parse_tron_address(USDT_TRC20_CONTRACT).expect("base58");
        assert_eq!(hex::encode(bytes), "a614f803b6fd780986a42c78ec9c7f77e6ded13c");
        assert_eq!(canonical, USDT_TRC20_CONTRACT);
        for form in [
            "41a614f803b6fd780986a42c78ec9c7f77e6ded13c",
            "0xa614f803b6fd780986a42c78ec9c7f77e6ded13c",
        ] {
            assert_eq!(parse_tron_address(form).expect("hex").1, USDT_TRC20_CONTRACT);
        }
        for bad in [
            "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6u",
            "41a614f803b6fd780986a42c78ec9c7f77e6ded1",
            "bc1qxyz",
            "",
        ] {
            assert!(parse_tron_address(bad).is_err(), "{bad}");
        }
    }
}
