//! The users module's settings as flags and environment variables, known only to binaries
//! that compile the module in.

use std::path::{Path, PathBuf};

use platform::settings::http_url;
use secrecy::SecretString;

use crate::UsersConfig;

/// `BULKHEAD_ADMIN_*`, `BULKHEAD_JWT_KEYS_DIR`, `BULKHEAD_PUBLIC_URL`.
#[derive(Debug, Clone, clap::Args)]
pub struct UsersArgs {
    /// Email of the admin the users module creates on first start.
    #[arg(long, env = "BULKHEAD_ADMIN_EMAIL", global = true, value_parser = parse_admin_email)]
    pub admin_email: Option<String>,

    /// Password of that admin (12–128 characters); unset: a random one, printed once.
    #[arg(long, env = "BULKHEAD_ADMIN_PASSWORD", global = true, hide_env_values = true, value_parser = parse_admin_password)]
    pub admin_password: Option<SecretString>,

    /// Directory of the Ed25519 keys that sign access tokens (default: `<data dir>/keys`).
    /// Files are PKCS#8 PEM named `<created, unix ms>.ed25519.pem`; the newest signs.
    #[arg(long, env = "BULKHEAD_JWT_KEYS_DIR", global = true)]
    pub jwt_keys_dir: Option<PathBuf>,

    /// Base URL of the pages people open from emails (verification and reset links).
    #[arg(long, env = "BULKHEAD_PUBLIC_URL", default_value = "http://localhost:8080", global = true, value_parser = parse_public_url)]
    pub public_url: String,
}

impl UsersArgs {
    /// The module's configuration; keys live under `data_dir` unless configured.
    pub fn config(&self, data_dir: &Path) -> UsersConfig {
        let keys_dir = self.jwt_keys_dir.clone().unwrap_or_else(|| data_dir.join("keys"));
        let mut config = UsersConfig::new(keys_dir, self.public_url.clone());
        if let Some(email) = &self.admin_email {
            config.first_admin.email.clone_from(email);
        }
        config.first_admin.password.clone_from(&self.admin_password);
        config
    }
}

fn parse_public_url(value: &str) -> Result<String, String> {
    http_url(value, "BULKHEAD_PUBLIC_URL").map(|_| value.trim().trim_end_matches('/').to_owned()).map_err(|_| {
        format!("BULKHEAD_PUBLIC_URL must be an http(s) URL such as https://shop.example.com, not `{value}`")
    })
}

fn parse_admin_email(value: &str) -> Result<String, String> {
    let valid = value.split_once('@').is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'));
    if valid { Ok(value.trim().to_owned()) } else { Err("BULKHEAD_ADMIN_EMAIL must be an email address".to_owned()) }
}

fn parse_admin_password(value: &str) -> Result<SecretString, String> {
    let length = value.chars().count();
    if (12..=128).contains(&length) {
        Ok(SecretString::from(value.to_owned()))
    } else {
        Err("BULKHEAD_ADMIN_PASSWORD must be 12 to 128 characters long".to_owned())
    }
}
