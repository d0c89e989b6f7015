//! Configuration: one TOML file (plus `DIALGUARD__SECTION__KEY` environment overrides) read by
//! the `config` crate into [`RawConfig`], then validated into [`Settings`]: typed durations,
//! zones and compiled rules. Every mistake is reported with the file, the key path and the
//! reason, before anything starts.

use crate::codec::DecodeSettings;
use crate::engine::rule::{parse_duration, Rule, RuleSpec};
use crate::engine::EngineSettings;
use jiff::tz::TimeZone;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The configuration file as written.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Engine and decoder settings.
    #[serde(default)]
    pub engine: RawEngine,
    /// Packs to load.
    #[serde(default)]
    pub policy: RawPolicy,
    /// Inline rules, same format as packs.
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
}

/// `[engine]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEngine {
    /// IANA zone used when a rule has no `timezone`, or says "callee" and the call has no
    /// `callee_tz`.
    #[serde(default = "default_timezone")]
    pub default_timezone: String,
    /// ISO 3166 region for phone numbers in national format.
    #[serde(default = "default_region")]
    pub default_region: String,
    /// How far behind the newest event time a call may still be judged (`"1h"`).
    #[serde(default = "default_lateness")]
    pub allowed_lateness: String,
    /// Records larger than this many bytes are refused.
    #[serde(default = "default_max_record_bytes")]
    pub max_record_bytes: u64,
    /// Timestamps further ahead of the wall clock than this are refused (`"5m"`).
    #[serde(default = "default_skew")]
    pub max_future_skew: String,
    /// At most this many call ids in an alert's evidence.
    #[serde(default = "default_evidence_limit")]
    pub evidence_limit: u64,
}

fn default_timezone() -> String {
    "UTC".into()
}
fn default_region() -> String {
    "US".into()
}
fn default_lateness() -> String {
    "1h".into()
}
const fn default_max_record_bytes() -> u64 {
    64 * 1024
}
fn default_skew() -> String {
    "5m".into()
}
const fn default_evidence_limit() -> u64 {
    10
}

impl Default for RawEngine {
    fn default() -> Self {
        RawEngine {
            default_timezone: default_timezone(),
            default_region: default_region(),
            allowed_lateness: default_lateness(),
            max_record_bytes: default_max_record_bytes(),
            max_future_skew: default_skew(),
            evidence_limit: default_evidence_limit(),
        }
    }
}

/// `[policy]`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    /// Pack files, relative to the configuration file.
    #[serde(default)]
    pub packs: Vec<String>,
}

/// A pack file: optional metadata and rules.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackFile {
    /// Metadata.
    #[serde(default)]
    pub pack: Option<PackMeta>,
    /// The rules.
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
}

/// `[pack]` in a pack file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackMeta {
    /// The pack's name (default: the file stem).
    pub name: Option<String>,
    /// What it covers.
    pub description: Option<String>,
    /// Where it applies.
    pub jurisdiction: Option<String>,
}

/// Why configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file could not be read or parsed.
    #[error("{path}: {reason}")]
    Load {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// A key holds a bad value.
    #[error("{path}: {key}: {reason}")]
    Invalid {
        /// The file the key came from (or the environment).
        path: String,
        /// The key path, e.g. `engine.default_timezone` or `rules[2].window`.
        key: String,
        /// Why.
        reason: String,
    },
}

impl ConfigError {
    /// The key path at fault, where there is one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } => Some(key),
            ConfigError::Load { .. } => None,
        }
    }
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The configuration file.
    pub path: PathBuf,
    /// Engine settings.
    pub engine: EngineSettings,
    /// Decoder settings.
    pub decode: DecodeSettings,
    /// Compiled rules, packs first (in `policy.packs` order), then inline rules.
    pub rules: Vec<Rule>,
    /// The default zone's name.
    pub default_timezone: String,
    /// Packs loaded: (name, path).
    pub packs: Vec<(String, PathBuf)>,
}

impl Settings {
    /// Loads the file with overrides from the process environment.
    pub fn load(path: &Path) -> Result<Settings, ConfigError> {
        Self::load_with_env(path, None)
    }

    /// Loads the file with overrides from `env` (`None`: the process environment). Tests pass a
    /// map so they never touch the process environment.
    pub fn load_with_env(
        path: &Path,
        env: Option<HashMap<String, String>>,
    ) -> Result<Settings, ConfigError> {
        let shown = path.display().to_string();
        if !path.is_file() {
            return Err(ConfigError::Load {
                path: shown,
                reason: "no such file".into(),
            });
        }
        let cfg = config::Config::builder()
            .add_source(config::File::from(path).format(config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix("DIALGUARD")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true)
                    .source(env),
            )
            .build()
            .map_err(|e| ConfigError::Load {
                path: shown.clone(),
                reason: e.to_string(),
            })?;
        let raw: RawConfig = cfg.try_deserialize().map_err(|e| config_error(&shown, e))?;
        Self::from_raw(raw, path)
    }

    /// Validates a raw configuration read from `path` (packs resolve relative to it).
    pub fn from_raw(raw: RawConfig, path: &Path) -> Result<Settings, ConfigError> {
        let shown = path.display().to_string();
        let invalid = |key: &str, reason: String| ConfigError::Invalid {
            path: shown.clone(),
            key: key.into(),
            reason,
        };
        let e = &raw.engine;
        let zone = TimeZone::get(&e.default_timezone).map_err(|_| {
            invalid(
                "engine.default_timezone",
                format!(
                    "unknown time zone {:?}: use an IANA name like \"Asia/Shanghai\"",
                    e.default_timezone
                ),
            )
        })?;
        let region: phonenumber::country::Id = e.default_region.parse().map_err(|_| {
            invalid("engine.default_region", format!("{:?} is not a region phone numbers know: use an ISO 3166 code like \"CN\" or \"US\"", e.default_region))
        })?;
        let lateness = parse_duration(&e.allowed_lateness)
            .map_err(|r| invalid("engine.allowed_lateness", r))?;
        let skew =
            parse_duration(&e.max_future_skew).map_err(|r| invalid("engine.max_future_skew", r))?;
        if !(256..=16 * 1024 * 1024).contains(&e.max_record_bytes) {
            return Err(invalid(
                "engine.max_record_bytes",
                format!("{} is outside 256 to 16777216", e.max_record_bytes),
            ));
        }
        if !(1..=1000).contains(&e.evidence_limit) {
            return Err(invalid(
                "engine.evidence_limit",
                format!("{} is outside 1 to 1000", e.evidence_limit),
            ));
        }

        let base = path.parent().unwrap_or(Path::new("."));
        let mut rules: Vec<Rule> = Vec::new();
        let mut origin: HashMap<String, String> = HashMap::new();
        let mut packs = Vec::new();
        for (i, p) in raw.policy.packs.iter().enumerate() {
            let pack_path = base.join(p);
            let pshown = pack_path.display().to_string();
            let text = std::fs::read_to_string(&pack_path).map_err(|err| {
                invalid(
                    &format!("policy.packs[{i}]"),
                    format!("cannot read pack {pshown}: {err}"),
                )
            })?;
            let pf: PackFile = toml::from_str(&text).map_err(|err| ConfigError::Load {
                path: pshown.clone(),
                reason: err.to_string().trim_end().to_owned(),
            })?;
            let name = pf
                .pack
                .as_ref()
                .and_then(|m| m.name.clone())
                .unwrap_or_else(|| {
                    pack_path
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default()
                });
            compile_rules(
                &pf.rules,
                &zone,
                &e.default_timezone,
                Some(&name),
                &pshown,
                &mut rules,
                &mut origin,
            )?;
            packs.push((name, pack_path));
        }
        compile_rules(
            &raw.rules,
            &zone,
            &e.default_timezone,
            None,
            &shown,
            &mut rules,
            &mut origin,
        )?;
        if rules.is_empty() {
            return Err(invalid(
                "policy.packs",
                "no rules: load at least one pack or write [[rules]]".into(),
            ));
        }
        Ok(Settings {
            path: path.to_owned(),
            engine: EngineSettings {
                allowed_lateness: lateness,
                evidence_limit: e.evidence_limit as usize,
                sweep_every: None,
            },
            decode: DecodeSettings {
                default_region: region,
                max_record_bytes: e.max_record_bytes as usize,
                max_future_skew: skew,
            },
            rules,
            default_timezone: e.default_timezone.clone(),
            packs,
        })
    }
}

/// Compiles the rules of one file (a pack, or the configuration's `[[rules]]`), keeping ids
/// unique across files.
fn compile_rules(
    specs: &[RuleSpec],
    zone: &TimeZone,
    zone_name: &str,
    pack: Option<&str>,
    path: &str,
    rules: &mut Vec<Rule>,
    origin: &mut HashMap<String, String>,
) -> Result<(), ConfigError> {
    for (j, spec) in specs.iter().enumerate() {
        let rule = spec
            .compile(zone, zone_name, pack)
            .map_err(|re| ConfigError::Invalid {
                path: path.into(),
                key: format!("rules[{j}].{}", re.key),
                reason: format!("rule {:?}: {}", re.rule, re.reason),
            })?;
        add_rule(rules, origin, rule, path, &format!("rules[{j}]"))?;
    }
    Ok(())
}

fn add_rule(
    rules: &mut Vec<Rule>,
    origin: &mut HashMap<String, String>,
    rule: Rule,
    path: &str,
    at: &str,
) -> Result<(), ConfigError> {
    if let Some(first) = origin.get(&rule.id) {
        return Err(ConfigError::Invalid {
            path: path.into(),
            key: format!("{at}.id"),
            reason: format!(
                "duplicate rule id {:?}: already defined in {first}",
                rule.id
            ),
        });
    }
    origin.insert(rule.id.clone(), format!("{path} {at}"));
    rules.push(rule);
    Ok(())
}

/// Maps a `config` crate error to ours, keeping its key path.
fn config_error(path: &str, e: config::ConfigError) -> ConfigError {
    match &e {
        config::ConfigError::Type { key: Some(k), .. } => ConfigError::Invalid {
            path: path.into(),
            key: k.clone(),
            reason: e.to_string(),
        },
        _ => {
            let msg = e.to_string();
            // Messages end "... for key `engine.x`" or "... in <file>"; pull the key out.
            let key = msg
                .split("for key `")
                .nth(1)
                .and_then(|s| s.split('`').next())
                .map(str::to_owned);
            match key {
                Some(key) => ConfigError::Invalid {
                    path: path.into(),
                    key,
                    reason: msg,
                },
                None => ConfigError::Load {
                    path: path.into(),
                    reason: msg,
                },
            }
        }
    }
}
