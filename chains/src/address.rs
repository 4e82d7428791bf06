//! One entry point to validate a receive address of any asset and return its
//! canonical text, the form every match key and observation uses.

use paywatch_state::Asset;

use crate::Network;

/// Why an address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("{0:?} is not a valid {1} address")]
    Invalid(String, &'static str),
    #[error("{address:?} is a {found} address, but network = \"{expected}\"")]
    WrongNetwork {
        address: String,
        found: &'static str,
        expected: Network,
    },
    #[error(
        "{0:?} is an MWEB address: MWEB outputs hide amount and recipient from a block scanner, so paywatch cannot watch them; use an ltc1/L/M address"
    )]
    Mweb(String),
    #[error("{0:?} has a wrong EIP-55 checksum (mixed case that does not match)")]
    BadChecksum(String),
    #[error(
        "{0:?} is an X-address with a destination tag; a receive address here takes none (give the tag separately)"
    )]
    TaggedXAddress(String),
    #[error("{asset} addresses are not supported by this build")]
    Unsupported { asset: &'static str },
}

pub fn canonical_address(asset: Asset, network: Network, text: &str) -> Result<String, AddressError> {
    match asset {
        Asset::Btc | Asset::Ltc => crate::utxo::matching::parse_utxo_address(asset, network, text).map(|a| a.canonical),
        Asset::UsdtBsc => crate::evm::parse_evm_address(text),
        Asset::Xrp => {
            let parsed = crate::xrpl::parse_xrp_address(network, text)?;
            match parsed.tag {
                None => Ok(parsed.classic),
                Some(_) => Err(AddressError::TaggedXAddress(text.to_string())),
            }
        }
        Asset::UsdtTrc20 => crate::tron::parse_tron_address(text).map(|(_, canonical)| canonical),
    }
}
