//! One entry point to validate a receive address of any asset and return its
//! canonical text, the form every match key and observation uses.

use paywatch_state::Asset;

use crate::Network;
pub use crate::utxo::address::AddressError;

pub fn canonical_address(asset: Asset, network: Network, text: &str) -> Result<String, AddressError> {
    match asset {
        Asset::Btc | Asset::Ltc => crate::utxo::source::parse_utxo_address(asset, network, text).map(|a| a.canonical),
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
