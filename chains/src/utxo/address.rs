//! Bitcoin and Litecoin addresses, validated per network and turned into the
//! scriptPubKey bytes that matching uses (Litecoin `3...` and `M...` are one
//! script). The `bitcoin` crate rejects Litecoin HRPs and versions, so
//! Litecoin is decoded here with its bech32/base58 re-exports.

use bitcoin::bech32::{self, Hrp};
use bitcoin::hashes::Hash;
use bitcoin::{PubkeyHash, ScriptBuf, ScriptHash, WitnessProgram, WitnessVersion};

use crate::Network;
use crate::address::AddressError;

/// A validated UTXO address: its script and its one canonical text form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UtxoAddress {
    pub script: ScriptBuf,
    pub canonical: String,
}

/// Bitcoin: any standard address type of the network (`1`, `3`, `bc1q`,
/// `bc1p`; `m`/`n`/`2`/`tb1` on testnet; `bcrt1` on regtest).
pub fn parse_btc(network: Network, text: &str) -> Result<UtxoAddress, AddressError> {
    let unchecked: bitcoin::Address<bitcoin::address::NetworkUnchecked> = text
        .trim()
        .parse()
        .map_err(|_| AddressError::Invalid(text.to_string(), "Bitcoin"))?;
    let wanted = match network {
        Network::Mainnet => bitcoin::Network::Bitcoin,
        Network::Testnet => bitcoin::Network::Testnet,
        Network::Regtest => bitcoin::Network::Regtest,
    };
    if !unchecked.is_valid_for_network(wanted) {
        let found = [
            (bitcoin::Network::Bitcoin, "mainnet"),
            (bitcoin::Network::Testnet, "testnet"),
            (bitcoin::Network::Regtest, "regtest"),
        ]
        .into_iter()
        .find(|(n, _)| unchecked.is_valid_for_network(*n))
        .map(|(_, name)| name)
        .unwrap_or("other");
        return Err(AddressError::WrongNetwork {
            address: text.to_string(),
            found,
            expected: network,
        });
    }
    let address = unchecked.assume_checked();
    Ok(UtxoAddress {
        script: address.script_pubkey(),
        canonical: address.to_string(),
    })
}

struct LtcParams {
    hrp: &'static str,
    p2pkh: u8,
    /// `3...` style (shared with Bitcoin) and the canonical `M...` style.
    p2sh: [u8; 2],
}

fn ltc_params(network: Network) -> LtcParams {
    match network {
        Network::Mainnet => LtcParams {
            hrp: "ltc",
            p2pkh: 48,
            p2sh: [5, 50],
        },
        Network::Testnet => LtcParams {
            hrp: "tltc",
            p2pkh: 111,
            p2sh: [196, 58],
        },
        Network::Regtest => LtcParams {
            hrp: "rltc",
            p2pkh: 111,
            p2sh: [196, 58],
        },
    }
}

/// Litecoin: `L`, `M`, `3`, `ltc1` (and testnet/regtest forms). MWEB
/// (`ltcmweb1`, `tmweb1`) is refused with its own error.
pub fn parse_ltc(network: Network, text: &str) -> Result<UtxoAddress, AddressError> {
    let text = text.trim();
    let lower = text.to_ascii_lowercase();
    if lower.starts_with("ltcmweb1") || lower.starts_with("tmweb1") {
        return Err(AddressError::Mweb(text.to_string()));
    }
    let params = ltc_params(network);
    let invalid = || AddressError::Invalid(text.to_string(), "Litecoin");
    if let Some((hrp_text, _)) = lower.rsplit_once('1')
        && ["ltc", "tltc", "rltc"].contains(&hrp_text)
    {
        let (hrp, version, program) = bech32::segwit::decode(text).map_err(|_| invalid())?;
        if hrp.as_str() != params.hrp {
            let found = match hrp.as_str() {
                "ltc" => "mainnet",
                "tltc" => "testnet",
                _ => "regtest",
            };
            return Err(AddressError::WrongNetwork {
                address: text.to_string(),
                found,
                expected: network,
            });
        }
        let version = WitnessVersion::try_from(version).map_err(|_| invalid())?;
        let program = WitnessProgram::new(version, &program).map_err(|_| invalid())?;
        let canonical_hrp = Hrp::parse(params.hrp).map_err(|_| invalid())?;
        let canonical = bech32::segwit::encode(canonical_hrp, version.into(), program.program().as_bytes())
            .map_err(|_| invalid())?;
        return Ok(UtxoAddress {
            script: ScriptBuf::new_witness_program(&program),
            canonical,
        });
    }
    let data = bitcoin::base58::decode_check(text).map_err(|_| invalid())?;
    let (version, hash) = data.split_first().ok_or_else(invalid)?;
    let hash: [u8; 20] = hash.try_into().map_err(|_| invalid())?;
    let script = if *version == params.p2pkh {
        ScriptBuf::new_p2pkh(&PubkeyHash::from_byte_array(hash))
    } else if params.p2sh.contains(version) {
        ScriptBuf::new_p2sh(&ScriptHash::from_byte_array(hash))
    } else {
        let other = if network == Network::Mainnet {
            ltc_params(Network::Testnet)
        } else {
            ltc_params(Network::Mainnet)
        };
        if *version == other.p2pkh || other.p2sh.contains(version) {
            let found = if network == Network::Mainnet {
                "testnet/regtest"
            } else {
                "mainnet"
            };
            return Err(AddressError::WrongNetwork {
                address: text.to_string(),
                found,
                expected: network,
            });
        }
        return Err(invalid());
    };
    let canonical_version = if script.is_p2sh() { params.p2sh[1] } else { params.p2pkh };
    let mut canonical = vec![canonical_version];
    canonical.extend_from_slice(&hash);
    Ok(UtxoAddress {
        script,
        canonical: bitcoin::base58::encode_check(&canonical),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitcoin_addresses_of_every_type_per_network() {
        // Real mainnet vectors (BIP 173 / BIP 350 and well-known addresses).
        for a in [
            "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa",
            "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy",
            "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
            "bc1p5d7rjq7g6rdk2yhzks9smlaqtedr4dekq08ge8ztwac72sfr9rusxg3297",
        ] {
            assert!(parse_btc(Network::Mainnet, a).is_ok(), "{a}");
            assert!(
                matches!(
                    parse_btc(Network::Regtest, a),
                    Err(AddressError::WrongNetwork { found: "mainnet", .. })
                ),
                "{a}"
            );
        }
        assert!(parse_btc(Network::Regtest, "bcrt1qs758ursh4q9z627kt3pp5yysm78ddny6txaqgw").is_ok());
        assert!(parse_btc(Network::Testnet, "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx").is_ok());
        assert!(
            matches!(
                parse_btc(Network::Mainnet, "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdr"),
                Err(AddressError::Invalid(..))
            ),
            "bad checksum"
        );
        // Upper-case bech32 is the same address, canonical lower-case.
        let upper = parse_btc(Network::Mainnet, "BC1QAR0SRRR7XFKVY5L643LYDNW9RE59GTZZWF5MDQ").expect("valid");
        assert_eq!(upper.canonical, "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq");
    }

    #[test]
    fn litecoin_3_and_m_are_one_script() {
        // Litecoin vectors here were generated by Litecoin Core 0.21.2.1 on mainnet.
        // The same script hash in both P2SH versions (mainnet).
        let m = parse_ltc(Network::Mainnet, "MU4zwZp5AmPCjsWhsTqQ3f9hY5JTa3WtrV").expect("M address");
        let hash = &m.script.as_bytes()[2..22];
        let mut three = vec![5u8];
        three.extend_from_slice(hash);
        let three = parse_ltc(Network::Mainnet, &bitcoin::base58::encode_check(&three)).expect("3 address");
        assert_eq!(three.script, m.script);
        assert_eq!(three.canonical, m.canonical, "one canonical text per script");
        assert!(m.canonical.starts_with('M'));
    }

    #[test]
    fn litecoin_addresses_per_network() {
        assert!(parse_ltc(Network::Mainnet, "LVMsxFgcubhhnRsReu7wQFfTbwrEiCxaU7").is_ok());
        assert!(parse_ltc(Network::Mainnet, "ltc1qkehv22jw3dzxlwdj29wvh70m5nwanc3jyajwwz").is_ok());
        assert!(matches!(
            parse_ltc(Network::Regtest, "ltc1qkehv22jw3dzxlwdj29wvh70m5nwanc3jyajwwz"),
            Err(AddressError::WrongNetwork { found: "mainnet", .. })
        ));
        assert!(matches!(
            parse_ltc(Network::Mainnet, "LVMsxFgcubhhnRsReu7wQFfTbwrEiCxaU8"),
            Err(AddressError::Invalid(..))
        ));
        assert!(
            matches!(
                parse_ltc(Network::Mainnet, "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa"),
                Err(AddressError::Invalid(..))
            ),
            "a bitcoin P2PKH is not litecoin"
        );
        assert!(matches!(
            parse_ltc(Network::Mainnet, "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"),
            Err(AddressError::Invalid(..))
        ));
    }

    #[test]
    fn mweb_addresses_are_refused() {
        // Generated by Litecoin Core 0.21.2.1 (`getnewaddress "" mweb`), like the vectors above.
        let mweb = "ltcmweb1qqfdep7aqs6d4kr3qxz3crvetk9ddhk4mtxrlg00a9us5pvgx7zcjjqj8p78dgln0sde6yq4z7m09hgy2ldg7763ya4z8c4ehhuweuyeljq8glyn2";
        assert!(matches!(parse_ltc(Network::Mainnet, mweb), Err(AddressError::Mweb(_))));
        assert!(matches!(
            parse_ltc(Network::Regtest, "tmweb1qqwhatever"),
            Err(AddressError::Mweb(_))
        ));
    }
}

/// The canonical address text of a standard script (P2PKH, P2SH, segwit),
/// the inverse of the parsers above.
pub fn script_address(asset: paywatch_state::Asset, network: Network, script: &bitcoin::Script) -> Option<String> {
    if asset != paywatch_state::Asset::Ltc {
        let params = match network {
            Network::Mainnet => bitcoin::Network::Bitcoin,
            Network::Testnet => bitcoin::Network::Testnet,
            Network::Regtest => bitcoin::Network::Regtest,
        };
        return bitcoin::Address::from_script(script, params)
            .ok()
            .map(|a| a.to_string());
    }
    let params = ltc_params(network);
    let bytes = script.as_bytes();
    if let Some(version) = script.witness_version() {
        let hrp = Hrp::parse(params.hrp).ok()?;
        return bech32::segwit::encode(hrp, version.into(), &bytes[2..]).ok();
    }
    let (version, hash) = if script.is_p2pkh() {
        (params.p2pkh, &bytes[3..23])
    } else if script.is_p2sh() {
        (params.p2sh[1], &bytes[2..22])
    } else {
        return None;
    };
    let mut data = vec![version];
    data.extend_from_slice(hash);
    Some(bitcoin::base58::encode_check(&data))
}

#[cfg(test)]
mod script_address_tests {
    use super::*;
    use paywatch_state::Asset;

    #[test]
    fn scripts_round_trip_to_their_canonical_address() {
        for (asset, network, text) in [
            (Asset::Ltc, Network::Mainnet, "LVMsxFgcubhhnRsReu7wQFfTbwrEiCxaU7"),
            (Asset::Ltc, Network::Mainnet, "MU4zwZp5AmPCjsWhsTqQ3f9hY5JTa3WtrV"),
            (
                Asset::Ltc,
                Network::Mainnet,
                "ltc1qkehv22jw3dzxlwdj29wvh70m5nwanc3jyajwwz",
            ),
            (
                Asset::Ltc,
                Network::Regtest,
                "rltc1qyl4mea0knx3ac9pcvgn6cxy40s63lf8hgpdekv",
            ),
            (
                Asset::Btc,
                Network::Mainnet,
                "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
            ),
            (Asset::Btc, Network::Mainnet, "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy"),
        ] {
            let parsed = match asset {
                Asset::Ltc => parse_ltc(network, text),
                _ => parse_btc(network, text),
            }
            .expect("valid");
            assert_eq!(script_address(asset, network, &parsed.script).as_deref(), Some(text));
        }
    }
}
