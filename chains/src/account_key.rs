//! Exclusive USDT addresses derived watch-only from an account's extended
//! public key: the BIP44 account key of coin type 60 (BNB Smart Chain, like
//! every EVM chain) or 195 (Tron), as a wallet exports it (`xpub...` of
//! `m/44'/60'/0'` or `m/44'/195'/0'`). Address `i` is the receive address
//! `.../0/i`: the last 20 bytes of keccak-256 of the uncompressed public
//! key, shown EIP-55 checksummed (EVM) or base58check with 0x41 (Tron): the
//! same addresses the merchant's wallet shows.

use alloy_primitives::{Address, keccak256};
use bitcoin::bip32::{ChildNumber, Xpub};
use bitcoin::secp256k1::{Secp256k1, VerifyOnly};
use paywatch_state::{AddressDeriver, Asset};

/// The receive chain below the account key.
const RECEIVE: ChildNumber = ChildNumber::Normal { index: 0 };

pub struct AccountKeyDeriver {
    asset: Asset,
    key: Xpub,
    text: String,
    secp: Secp256k1<VerifyOnly>,
}

impl AccountKeyDeriver {
    /// An account key (`xpub...` or `tpub...`) for USDT_BSC or USDT_TRC20,
    /// optionally with its key origin (`[fingerprint/44'/60'/0']xpub...`),
    /// which is then checked against the asset's coin type.
    pub fn parse(asset: Asset, text: &str) -> Result<AccountKeyDeriver, String> {
        let coin = match asset {
            Asset::UsdtBsc => 60,
            Asset::UsdtTrc20 => 195,
            _ => return Err(format!("{asset} does not derive account-key addresses")),
        };
        let text = text.trim();
        let key_text = match text.strip_prefix('[') {
            Some(rest) => {
                let (origin, key) = rest.split_once(']').ok_or("unclosed key origin '['")?;
                check_origin(origin, coin)?;
                key
            }
            None => text,
        };
        let key: Xpub = key_text
            .parse()
            .map_err(|e| format!("not an extended public key (xpub...): {e}"))?;
        if key.depth != 3 || !key.child_number.is_hardened() {
            return Err(format!(
                "the key is at depth {}, not an account key (m/44'/{coin}'/N', depth 3, hardened): export the account's xpub",
                key.depth
            ));
        }
        Ok(AccountKeyDeriver {
            asset,
            key,
            text: text.to_string(),
            secp: Secp256k1::verification_only(),
        })
    }

    /// The 20-byte account of receive address `index`.
    fn account(&self, index: u32) -> Result<[u8; 20], String> {
        let child = ChildNumber::from_normal_idx(index).map_err(|e| e.to_string())?;
        let key = self
            .key
            .derive_pub(&self.secp, &[RECEIVE, child])
            .map_err(|e| e.to_string())?;
        let uncompressed = key.public_key.serialize_uncompressed();
        let hash = keccak256(&uncompressed[1..]);
        let mut account = [0u8; 20];
        account.copy_from_slice(&hash[12..]);
        Ok(account)
    }
}

/// A key origin `fingerprint/44'/COIN'/N'` must be a BIP44 account of
/// `coin` (a Bitcoin or BSC key given for Tron derives addresses no Tron
/// wallet shows).
fn check_origin(origin: &str, coin: u32) -> Result<(), String> {
    let steps: Vec<&str> = origin.split('/').skip(1).collect();
    let hardened = |step: &str| {
        step.strip_suffix('\'')
            .or_else(|| step.strip_suffix('h'))
            .map(str::to_string)
    };
    match steps.as_slice() {
        [purpose, coin_type, account]
            if hardened(purpose).as_deref() == Some("44")
                && hardened(coin_type).as_deref() == Some(coin.to_string().as_str())
                && hardened(account).is_some_and(|a| a.parse::<u32>().is_ok()) =>
        {
            Ok(())
        }
        _ => Err(format!(
            "the key origin [{origin}] is not a BIP44 account of coin type {coin} (44'/{coin}'/N')"
        )),
    }
}

impl AddressDeriver for AccountKeyDeriver {
    fn derive(&self, index: u32) -> Result<String, String> {
        let account = self.account(index)?;
        Ok(match self.asset {
            Asset::UsdtTrc20 => crate::tron::base58_of(&account),
            _ => Address::from(account).to_checksum(None),
        })
    }

    fn id(&self) -> String {
        format!("{}:{}", self.asset, self.text)
    }
}

#[cfg(test)]
mod tests {
    use bitcoin::bip32::{DerivationPath, Xpriv};

    use super::*;

    /// The BIP-39 seed of "abandon abandon ... abandon about" (no
    /// passphrase), the mnemonic wallets' published vectors use.
    const ABANDON_SEED: &str = "5eb00bbddcf069084889a8ab9155568165f5c453ccb85e70811aaed6f6da5fc19a5ac40b389cd370d086206dec8aa6c43daea6690f20ad3d8d48b2d2ce9e38e4";

    fn account_xpub(path: &str) -> String {
        let secp = Secp256k1::new();
        let seed = hex::decode(ABANDON_SEED).expect("hex");
        let master = Xpriv::new_master(bitcoin::NetworkKind::Main, &seed).expect("master");
        let path: DerivationPath = path.parse().expect("path");
        let account = master.derive_priv(&secp, &path).expect("derive");
        Xpub::from_priv(&secp, &account).to_string()
    }

    #[test]
    fn the_published_vectors_of_the_abandon_mnemonic() {
        // m/44'/60'/0'/0/0, as every Ethereum wallet shows it.
        let bsc = AccountKeyDeriver::parse(Asset::UsdtBsc, &account_xpub("m/44'/60'/0'")).expect("bsc");
        assert_eq!(bsc.derive(0).expect("0"), "0x9858EfFD232B4033E47d90003D41EC34EcaEda94");
        // m/44'/195'/0'/0/i, as TronLink and Ledger show it.
        let tron = AccountKeyDeriver::parse(Asset::UsdtTrc20, &account_xpub("m/44'/195'/0'")).expect("tron");
        assert_eq!(tron.derive(0).expect("0"), "TUEZSdKsoDHQMeZwihtdoBiN46zxhGWYdH");
        assert_eq!(tron.derive(1).expect("1"), "TSeJkUh4Qv67VNFwY8LaAxERygNdy6NQZK");
        assert_eq!(tron.derive(2).expect("2"), "TYJPRrdB5APNeRs4R7fYZSwW3TcrTKw2gx");
    }

    #[test]
    fn the_account_keys_a_wallet_exports_for_the_abandon_mnemonic() {
        // Used by the end-to-end tests (tests/evm_anvil.rs, tests/tron_http.rs).
        assert_eq!(account_xpub("m/44'/60'/0'"), ABANDON_BSC_ACCOUNT_XPUB);
        assert_eq!(account_xpub("m/44'/195'/0'"), ABANDON_TRON_ACCOUNT_XPUB);
    }

    const ABANDON_BSC_ACCOUNT_XPUB: &str = "xpub6DCoCpSuQZB2jawqnGMEPS63ePKWkwWPH4TU45Q7LPXWuNd8TMtVxRrgjtEshuqpK3mdhaWHPFsBngh5GFZaM6si3yZdUsT8ddYM3PwnATt";
    const ABANDON_TRON_ACCOUNT_XPUB: &str = "xpub6D1AabNHCupeiLM65ZR9UStMhJ1vCpyV4XbZdyhMZBiJXALQtmn9p42VTQckoHVn8WNqS7dqnJokZHAHcHGoaQgmv8D45oNUKx6DZMNZBCd";

    #[test]
    fn a_key_origin_must_name_the_assets_coin_type() {
        let bsc = format!("[d90c6a4f/44'/60'/0']{}", account_xpub("m/44'/60'/0'"));
        let parsed = AccountKeyDeriver::parse(Asset::UsdtBsc, &bsc).expect("bsc with its origin");
        assert_eq!(
            parsed.derive(0).expect("0"),
            "0x9858EfFD232B4033E47d90003D41EC34EcaEda94"
        );
        let refused = AccountKeyDeriver::parse(Asset::UsdtTrc20, &bsc)
            .err()
            .expect("a BSC key for Tron");
        assert!(refused.contains("coin type 195"), "{refused}");
    }

    #[test]
    fn only_account_keys_of_usdt_assets() {
        let root = account_xpub("m");
        let refused = AccountKeyDeriver::parse(Asset::UsdtBsc, &root)
            .err()
            .expect("depth 0 is refused");
        assert!(refused.contains("depth 0"), "{refused}");
        assert!(AccountKeyDeriver::parse(Asset::Ltc, &account_xpub("m/44'/2'/0'")).is_err());
        assert!(AccountKeyDeriver::parse(Asset::UsdtTrc20, "xpub-garbage").is_err());
    }
}
