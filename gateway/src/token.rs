//! The JWT secret and `agent-gateway token mint`.

use agw_storage::SettingsStore;
use std::path::PathBuf;

use anyhow::Context;

use agw_config::{Config, ProcessEnv};
use agw_protocols::http::auth::mint_token;
use agw_storage::{Store, new_token};

/// The HS256 secret: `AGW_JWT_SECRET` / `jwt_secret`, else the one stored at
/// first start (generated then, shared by every replica and by `token mint`).
pub(crate) async fn jwt_secret(store: &Store, cfg: &Config) -> anyhow::Result<Vec<u8>> {
    if let Some(s) = &cfg.jwt_secret {
        return Ok(s.as_bytes().to_vec());
    }
    let stored = store
        .setting_get_or_insert("jwt_secret", &format!("{}{}", new_token(), new_token()))
        .await
        .context("cannot read or store the JWT secret")?;
    Ok(stored.into_bytes())
}

/// Parses `30s`, `15m`, `1h`, `7d` or plain seconds.
pub(crate) fn parse_ttl(s: &str) -> anyhow::Result<i64> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num
        .parse()
        .with_context(|| format!("invalid --ttl {s:?}: expected e.g. 30s, 15m, 1h, 7d"))?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => anyhow::bail!("invalid --ttl {s:?}: unit must be s, m, h or d"),
    };
    anyhow::ensure!(n > 0, "--ttl must be positive");
    Ok(n * mult)
}

/// Prints a bearer JWT for `sub` acting as `tenant`.
pub(crate) async fn mint(
    config: Option<PathBuf>,
    sub: &str,
    tenant: &str,
    ttl: &str,
) -> anyhow::Result<()> {
    let cfg = Config::load(config.as_deref(), &ProcessEnv)?;
    let ttl = parse_ttl(ttl)?;
    let max = match cfg.jwt.max_ttl_secs {
        0 => i64::MAX,
        n => i64::try_from(n).unwrap_or(i64::MAX),
    };
    anyhow::ensure!(
        ttl <= max,
        "--ttl {ttl}s is over the maximum token lifetime of {max}s (AGW_JWT_MAX_TTL_SECS / jwt.max_ttl_secs)"
    );
    anyhow::ensure!(!sub.trim().is_empty(), "--sub must not be empty");
    agw_protocols::intent_bus::wire::owner_name(tenant)
        .map_err(|e| anyhow::anyhow!("--tenant: {e}"))?;
    let secret = if let Some(s) = &cfg.jwt_secret {
        s.as_bytes().to_vec()
    } else {
        let store = crate::cli::open_store(&cfg).await?;
        let s = jwt_secret(&store, &cfg).await?;
        store.close().await;
        s
    };
    println!(
        "{}",
        mint_token(
            &secret,
            &agw_protocols::http::auth::Minted {
                audience: &cfg.jwt_audience,
                issuer: cfg.jwt.issuer.as_deref(),
            },
            sub,
            tenant,
            ttl
        )
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_ttl;

    #[test]
    fn ttl_units() {
        assert_eq!(parse_ttl("1h").unwrap(), 3600);
        assert_eq!(parse_ttl("90").unwrap(), 90);
        assert_eq!(parse_ttl("2d").unwrap(), 172_800);
        assert!(parse_ttl("1w").is_err());
        assert!(parse_ttl("0s").is_err());
        assert!(parse_ttl("h").is_err());
    }
}
