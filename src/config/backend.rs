//! The backend of an asset and the keys only it takes: one struct per
//! backend, unknown keys refused, held in an enum that carries its data. A
//! key of another backend is an error naming the key and where it belongs.

use std::path::PathBuf;

use paywatch_chains::Secret;
use paywatch_chains::rpc::RpcAuth;
use paywatch_state::Asset;
use serde::Deserialize;

use super::defaults;
use super::values::{ConfigError, err, read_secret};

/// A backend with its own settings.
#[derive(Clone, Debug)]
pub enum BackendConfig {
    /// Bitcoin Core / Litecoin Core JSON-RPC.
    CoreRpc { auth: RpcAuth },
    /// An Esplora REST API (Blockstream, mempool.space, an own electrs).
    Esplora,
    /// An Ethereum JSON-RPC endpoint, for an ERC-20 token (USDT on BSC).
    Evm(EvmToken),
    /// rippled JSON-RPC, with the API version sent with every call.
    Rippled { api_version: u8 },
    /// A Tron full node's HTTP API (TronGrid or an own java-tron).
    TronHttp(TronToken),
}

#[derive(Clone, Debug)]
pub struct EvmToken {
    /// The token contract, checksummed.
    pub contract: String,
    pub decimals: u8,
    pub chain_id: u64,
}

#[derive(Clone, Debug)]
pub struct TronToken {
    /// The token contract, base58.
    pub contract: String,
    pub api_key: Option<Secret>,
}

impl BackendConfig {
    pub fn name(&self) -> &'static str {
        match self {
            BackendConfig::CoreRpc { .. } => "core-rpc",
            BackendConfig::Esplora => "esplora",
            BackendConfig::Evm(_) => "evm",
            BackendConfig::Rippled { .. } => "rippled",
            BackendConfig::TronHttp(_) => "tron-http",
        }
    }

    /// Blocks (or ledgers) per scan step when `max_blocks_per_poll` is unset.
    pub fn default_blocks_per_poll(&self) -> u64 {
        match self {
            BackendConfig::Evm(_) => defaults::EVM_BLOCKS_PER_POLL,
            BackendConfig::Rippled { .. } => defaults::XRP_LEDGERS_PER_POLL,
            _ => defaults::BLOCKS_PER_POLL,
        }
    }

    /// Whether the mempool is read per watched address (so the set of
    /// addresses that can still receive matters).
    pub fn reads_mempool_per_address(&self) -> bool {
        matches!(self, BackendConfig::Esplora)
    }
}

/// The backends an asset can use, by name.
const BACKENDS: [(&str, &[Asset]); 5] = [
    ("core-rpc", &[Asset::Btc, Asset::Ltc]),
    ("esplora", &[Asset::Btc, Asset::Ltc]),
    ("evm", &[Asset::UsdtBsc]),
    ("rippled", &[Asset::Xrp]),
    ("tron-http", &[Asset::UsdtTrc20]),
];

/// Each backend's own keys.
const BACKEND_KEYS: [(&str, &[&str]); 5] = [
    ("core-rpc", &["rpc_user", "rpc_password_file", "rpc_cookie_file"]),
    ("esplora", &[]),
    ("evm", &["contract", "decimals", "chain_id"]),
    ("rippled", &["api_version"]),
    ("tron-http", &["contract", "api_key_file"]),
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CoreRpcKeys {
    rpc_user: Option<String>,
    rpc_password_file: Option<PathBuf>,
    rpc_cookie_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EsploraKeys {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EvmKeys {
    contract: Option<String>,
    decimals: Option<u8>,
    chain_id: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RippledKeys {
    api_version: Option<u8>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TronKeys {
    contract: Option<String>,
    api_key_file: Option<PathBuf>,
}

/// Takes the backend's name and its own keys out of an asset's table,
/// leaving the shared keys. `key` is the table's path (`assets.LTC`).
pub fn split_backend(asset: Asset, key: &str, table: &mut toml::Table) -> Result<(String, toml::Table), ConfigError> {
    let k = |field: &str| format!("{key}.{field}");
    let name = match table.remove("backend") {
        Some(toml::Value::String(name)) => name,
        Some(_) => return Err(err(k("backend"), "must be a string")),
        None => return Err(err(key, "missing field `backend`")),
    };
    let fits = BACKENDS.iter().any(|(b, assets)| *b == name && assets.contains(&asset));
    if !fits {
        return Err(err(k("backend"), format!("{name:?} is not a backend for {asset}")));
    }
    let own: &[&str] = BACKEND_KEYS
        .iter()
        .find(|(b, _)| *b == name)
        .map(|(_, keys)| *keys)
        .unwrap_or(&[]);
    let mut keys = toml::Table::new();
    for field in own {
        if let Some(value) = table.remove(*field) {
            keys.insert(field.to_string(), value);
        }
    }
    // Another backend's key left among the shared ones: say whose it is.
    for field in table.keys() {
        let owners: Vec<&str> = BACKEND_KEYS
            .iter()
            .filter(|(_, keys)| keys.contains(&field.as_str()))
            .map(|(b, _)| *b)
            .collect();
        if !owners.is_empty() {
            return Err(err(
                k(field),
                format!(
                    "{field} is not a key of backend {name:?}; it is for {}",
                    owners
                        .iter()
                        .map(|o| format!("{o:?}"))
                        .collect::<Vec<_>>()
                        .join(" and ")
                ),
            ));
        }
    }
    Ok((name, keys))
}

fn typed<T: serde::de::DeserializeOwned>(key: &str, keys: toml::Table) -> Result<T, ConfigError> {
    keys.try_into()
        .map_err(|e: toml::de::Error| err(key, super::values::toml_message(&e)))
}

/// The backend `name` with its own keys, checked.
pub fn parse_backend(asset: Asset, key: &str, name: &str, keys: toml::Table) -> Result<BackendConfig, ConfigError> {
    let k = |field: &str| format!("{key}.{field}");
    Ok(match name {
        "core-rpc" => {
            let raw: CoreRpcKeys = typed(key, keys)?;
            BackendConfig::CoreRpc {
                auth: core_auth(&k, raw)?,
            }
        }
        "esplora" => {
            let _: EsploraKeys = typed(key, keys)?;
            BackendConfig::Esplora
        }
        "evm" => {
            let raw: EvmKeys = typed(key, keys)?;
            let contract = raw.contract.as_deref().unwrap_or(defaults::USDT_BSC_CONTRACT);
            let contract = paywatch_chains::evm::parse_evm_address(contract).map_err(|e| err(k("contract"), e))?;
            let decimals = raw.decimals.unwrap_or(asset.decimals() as u8);
            if u32::from(decimals) != asset.decimals() {
                return Err(err(
                    k("decimals"),
                    format!(
                        "{asset} amounts have {} decimals; a token with {decimals} is another asset",
                        asset.decimals()
                    ),
                ));
            }
            BackendConfig::Evm(EvmToken {
                contract,
                decimals,
                chain_id: raw.chain_id.unwrap_or(defaults::BSC_CHAIN_ID),
            })
        }
        "rippled" => {
            let raw: RippledKeys = typed(key, keys)?;
            let api_version = match raw.api_version {
                None => defaults::RIPPLED_API_VERSION,
                Some(v @ (1 | 2)) => v,
                Some(v) => {
                    return Err(err(
                        k("api_version"),
                        format!("{v} is not a rippled API version (1 or 2)"),
                    ));
                }
            };
            BackendConfig::Rippled { api_version }
        }
        "tron-http" => {
            let raw: TronKeys = typed(key, keys)?;
            let contract = raw
                .contract
                .as_deref()
                .unwrap_or(paywatch_chains::tron::USDT_TRC20_CONTRACT);
            let (_, contract) =
                paywatch_chains::tron::parse_tron_address(contract).map_err(|e| err(k("contract"), e))?;
            let api_key = raw
                .api_key_file
                .as_deref()
                .map(|f| read_secret(&k("api_key_file"), f))
                .transpose()?;
            BackendConfig::TronHttp(TronToken { contract, api_key })
        }
        other => return Err(err(k("backend"), format!("{other:?} is not a backend for {asset}"))),
    })
}

fn core_auth(k: &impl Fn(&str) -> String, raw: CoreRpcKeys) -> Result<RpcAuth, ConfigError> {
    Ok(match (&raw.rpc_user, &raw.rpc_password_file, &raw.rpc_cookie_file) {
        (Some(_), _, Some(_)) => {
            return Err(err(
                k("rpc_cookie_file"),
                "use either rpc_user + rpc_password_file or rpc_cookie_file",
            ));
        }
        (Some(user), Some(file), None) => RpcAuth::UserPassword {
            user: user.clone(),
            password: read_secret(&k("rpc_password_file"), file)?,
        },
        (Some(_), None, None) => return Err(err(k("rpc_password_file"), "rpc_user needs rpc_password_file")),
        (None, Some(_), None) => return Err(err(k("rpc_user"), "rpc_password_file needs rpc_user")),
        (None, _, Some(cookie)) => RpcAuth::Cookie(cookie.clone()),
        (None, None, None) => RpcAuth::None,
    })
}
