//! Watch-only BIP32 derivation: a fresh receive address per intent from an
//! extended public key, exactly as Core's `deriveaddresses` would give it.
//!
//! Accepted forms:
//! - a bare extended key: `xpub`/`tpub` (P2PKH), `ypub`/`upub` (P2SH-P2WPKH),
//!   `zpub`/`vpub` (P2WPKH), taken as an account key whose receive addresses
//!   are at `/0/i`;
//! - a descriptor: `wpkh(KEY/path/*)`, `sh(wpkh(KEY/path/*))`,
//!   `pkh(KEY/path/*)`, optionally with a `[fingerprint/origin]` before the
//!   key and a `#checksum` after; the steps after the key must be unhardened
//!   and end in `*`.

use bitcoin::bip32::{ChildNumber, Xpub};
use bitcoin::secp256k1::{Secp256k1, VerifyOnly};
use bitcoin::{CompressedPublicKey, ScriptBuf};
use paywatch_state::{AddressDeriver, Asset};

use super::address::script_address;
use crate::Network;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ScriptKind {
    Pkh,
    ShWpkh,
    Wpkh,
}

pub struct XpubDeriver {
    asset: Asset,
    network: Network,
    key: Xpub,
    kind: ScriptKind,
    /// Unhardened steps between the key and the index.
    path: Vec<ChildNumber>,
    text: String,
    secp: Secp256k1<VerifyOnly>,
}

/// SLIP-132 version bytes: (version, is mainnet, script kind).
const VERSIONS: [([u8; 4], bool, ScriptKind); 6] = [
    ([0x04, 0x88, 0xb2, 0x1e], true, ScriptKind::Pkh),     // xpub
    ([0x04, 0x9d, 0x7c, 0xb2], true, ScriptKind::ShWpkh),  // ypub
    ([0x04, 0xb2, 0x47, 0x46], true, ScriptKind::Wpkh),    // zpub
    ([0x04, 0x35, 0x87, 0xcf], false, ScriptKind::Pkh),    // tpub
    ([0x04, 0x4a, 0x52, 0x62], false, ScriptKind::ShWpkh), // upub
    ([0x04, 0x5f, 0x1c, 0xf6], false, ScriptKind::Wpkh),   // vpub
];

impl XpubDeriver {
    pub fn parse(asset: Asset, network: Network, text: &str) -> Result<XpubDeriver, String> {
        let trimmed = text.trim();
        let body = trimmed.split('#').next().unwrap_or_default();
        let (kind, inner) = if let Some(rest) = body.strip_prefix("sh(wpkh(").and_then(|r| r.strip_suffix("))")) {
            (Some(ScriptKind::ShWpkh), rest)
        } else if let Some(rest) = body.strip_prefix("wpkh(").and_then(|r| r.strip_suffix(')')) {
            (Some(ScriptKind::Wpkh), rest)
        } else if let Some(rest) = body.strip_prefix("pkh(").and_then(|r| r.strip_suffix(')')) {
            (Some(ScriptKind::Pkh), rest)
        } else if body.contains('(') {
            return Err("only wpkh(...), sh(wpkh(...)) and pkh(...) descriptors are supported".into());
        } else {
            (None, body)
        };
        // Drop a key origin "[fingerprint/84'/0'/0']".
        let inner = match inner.strip_prefix('[') {
            Some(rest) => rest.split_once(']').map(|(_, k)| k).ok_or("unclosed key origin '['")?,
            None => inner,
        };
        let mut parts = inner.split('/');
        let key_text = parts.next().unwrap_or_default();
        let steps: Vec<&str> = parts.collect();
        let mut data =
            bitcoin::base58::decode_check(key_text).map_err(|e| format!("not an extended public key: {e}"))?;
        if data.len() != 78 {
            return Err("not an extended public key (wrong length)".into());
        }
        let version: [u8; 4] = data[..4].try_into().map_err(|_| "short key")?;
        let (_, mainnet, version_kind) = VERSIONS
            .iter()
            .find(|(v, _, _)| *v == version)
            .ok_or("unknown extended key version (xpub/ypub/zpub/tpub/upub/vpub)")?;
        if *mainnet != (network == Network::Mainnet) {
            let found = if *mainnet { "mainnet" } else { "testnet/regtest" };
            return Err(format!("a {found} extended key, but network = \"{network}\""));
        }
        // Normalise to the plain xpub/tpub version the bitcoin crate reads.
        data[..4].copy_from_slice(if *mainnet { &VERSIONS[0].0 } else { &VERSIONS[3].0 });
        let key = Xpub::decode(&data).map_err(|e| format!("invalid extended public key: {e}"))?;
        let path = match kind {
            None => vec![ChildNumber::Normal { index: 0 }],
            Some(_) => {
                let (last, middle) = steps.split_last().ok_or("a descriptor key needs a path ending in /*")?;
                if *last != "*" {
                    return Err("the descriptor path must end in /* (a range of receive addresses)".into());
                }
                middle
                    .iter()
                    .map(|s| {
                        let n: u32 = s
                            .parse()
                            .map_err(|_| format!("path step {s:?} must be an unhardened number"))?;
                        ChildNumber::from_normal_idx(n).map_err(|e| e.to_string())
                    })
                    .collect::<Result<_, String>>()?
            }
        };
        if kind.is_none() && !steps.is_empty() {
            return Err("a bare extended key takes no path; use a descriptor such as wpkh(KEY/0/*)".into());
        }
        Ok(XpubDeriver {
            asset,
            network,
            key,
            kind: kind.unwrap_or(*version_kind),
            path,
            text: trimmed.to_string(),
            secp: Secp256k1::verification_only(),
        })
    }
}

impl std::fmt::Debug for XpubDeriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "XpubDeriver({} {} {:?})", self.asset, self.network, self.text)
    }
}

impl AddressDeriver for XpubDeriver {
    fn derive(&self, index: u32) -> Result<String, String> {
        let mut path = self.path.clone();
        path.push(ChildNumber::from_normal_idx(index).map_err(|e| e.to_string())?);
        let child = self.key.derive_pub(&self.secp, &path).map_err(|e| e.to_string())?;
        let pubkey = CompressedPublicKey(child.public_key);
        let script = match self.kind {
            ScriptKind::Pkh => ScriptBuf::new_p2pkh(&pubkey.pubkey_hash()),
            ScriptKind::Wpkh => ScriptBuf::new_p2wpkh(&pubkey.wpubkey_hash()),
            ScriptKind::ShWpkh => ScriptBuf::new_p2sh(&ScriptBuf::new_p2wpkh(&pubkey.wpubkey_hash()).script_hash()),
        };
        script_address(self.asset, self.network, &script)
            .ok_or_else(|| "derived script has no address form".to_string())
    }

    fn id(&self) -> String {
        self.text.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // BIP 84 test vector (mnemonic "abandon ... about"): account 0 zpub and
    // its first receive address.
    const ZPUB: &str = "zpub6rFR7y4Q2AijBEqTUquhVz398htDFrtymD9xYYfG1m4wAcvPhXNfE3EfH1r1ADqtfSdVCToUG868RvUUkgDKf31mGDtKsAYz2oz2AGutZYs";

    #[test]
    fn bip84_vector_bitcoin() {
        let d = XpubDeriver::parse(Asset::Btc, Network::Mainnet, ZPUB).expect("zpub");
        assert_eq!(
            d.derive(0).expect("derive"),
            "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu"
        );
        assert_eq!(
            d.derive(1).expect("derive"),
            "bc1qnjg0jd8228aq7egyzacy8cys3knf9xvrerkf9g"
        );
        // The same key as a descriptor gives the same addresses.
        let desc = format!(
            "wpkh([73c5da0a/84'/0'/0']{}/0/*)",
            "xpub6CatWdiZiodmUeTDp8LT5or8nmbKNcuyvz7WyksVFkKB4RHwCD3XyuvPEbvqAQY3rAPshWcMLoP2fMFMKHPJ4ZeZXYVUhLv1VMrjPC7PW6V"
        );
        let d2 = XpubDeriver::parse(Asset::Btc, Network::Mainnet, &desc).expect("descriptor");
        assert_eq!(
            d2.derive(0).expect("derive"),
            "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu"
        );
    }

    #[test]
    fn network_and_form_errors() {
        assert!(
            XpubDeriver::parse(Asset::Btc, Network::Regtest, ZPUB)
                .expect_err("refused")
                .contains("mainnet")
        );
        assert!(XpubDeriver::parse(Asset::Btc, Network::Mainnet, "tr(xpub/0/*)").is_err());
        assert!(XpubDeriver::parse(Asset::Btc, Network::Mainnet, "zpub123").is_err());
        assert!(
            XpubDeriver::parse(Asset::Btc, Network::Mainnet, &format!("wpkh({ZPUB}/0/1)"))
                .expect_err("refused")
                .contains("/*")
        );
        assert!(
            XpubDeriver::parse(Asset::Btc, Network::Mainnet, &format!("wpkh({ZPUB}/0'/*)"))
                .expect_err("refused")
                .contains("unhardened")
        );
    }
}
