//! The example config parses, and bad configs are refused with the file named.

use fwrepo_server::ServerConfig;

#[test]
fn example_config_parses_and_matches_the_defaults() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/fwrepo-server.toml");
    let text = std::fs::read_to_string(path).unwrap();
    let config = ServerConfig::from_toml(path, &text).unwrap();
    // The example sets every key; all but the audit log are the defaults.
    let expected = ServerConfig { audit_log: Some("/var/log/fwrepo/audit.jsonl".into()), ..ServerConfig::default() };
    assert_eq!(config, expected);
}

#[test]
fn unknown_keys_and_nonsense_values_are_refused() {
    let err = ServerConfig::from_toml("x.toml", "listen = \"127.0.0.1:1\"\nlisten_port = 3\n").unwrap_err();
    assert!(err.to_string().contains("x.toml"), "{err}");
    assert!(err.to_string().contains("listen_port"), "{err}");
    assert!(ServerConfig::from_toml("x.toml", "max_header_bytes = 100").is_err());
    assert!(ServerConfig::from_toml("x.toml", "max_header_bytes = 1048577").is_err());
    assert!(ServerConfig::from_toml("x.toml", "max_header_bytes = 1048576").is_ok());
    assert!(ServerConfig::from_toml("x.toml", "idle_timeout_s = 0").is_err());
    assert!(ServerConfig::from_toml("x.toml", "max_connections_per_ip = 0").is_err());
    assert!(ServerConfig::from_toml("x.toml", "request_idle_timeout_s = 0").is_err());
    assert!(ServerConfig::from_toml("x.toml", "body_read_timeout_s = 0").is_err());
    assert!(ServerConfig::from_toml("x.toml", "[tokens]\nrequire = \"nothing\"").is_err());
    assert!(ServerConfig::from_toml("x.toml", "[tokens]\nper_client_burst = 0").is_err());
    assert!(ServerConfig::from_toml("x.toml", "[tokens]\nper_ip = 3").is_err());
    let both = ServerConfig::from_toml("x.toml", "[tokens]\nrequire = \"serial+agreement\"").unwrap();
    assert_eq!(both.tokens.require, fwrepo_server::TokenRequire::SerialAndAgreement);
    assert_eq!(ServerConfig::from_toml("x.toml", "").unwrap(), ServerConfig::default());
}

#[test]
fn delta_settings_are_checked() {
    assert!(ServerConfig::from_toml("x.toml", "[deltas]\nlevel = 0").is_err());
    assert!(ServerConfig::from_toml("x.toml", "[deltas]\nlevel = 23").is_err());
    assert!(ServerConfig::from_toml("x.toml", "[deltas]\nmax_queued_requests = 0").is_err());
    assert!(ServerConfig::from_toml("x.toml", "[deltas]\nretry_after_s = 0").is_err());
    assert!(ServerConfig::from_toml("x.toml", "[deltas]\nqueue = 3").is_err());
    let c = ServerConfig::from_toml("x.toml", "[deltas]\nworkers = 1000\nlevel = 19").unwrap();
    assert_eq!(c.deltas.level, 19);
    let cores = std::thread::available_parallelism().unwrap().get();
    assert_eq!(c.deltas.worker_count(), cores, "never more workers than cores");
    assert_eq!(ServerConfig::default().deltas.level, fwrepo_server::ON_DEMAND_LEVEL);
}
