//! `agent-gateway token mint`: a bearer JWT signed with the gateway's HS256
//! secret (see `bootstrap` for where the secret comes from).

use std::path::PathBuf;

use anyhow::Context;

use agw_protocols::http::auth::mint_token;

use crate::bootstrap;

/// Parses `30s`, `15m`, `1h`, `7d` or plain seconds.
fn parse_ttl(s: &str) -> anyhow::Result<i64> {
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
    let cfg = bootstrap::load_config(config.as_deref())?;
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
    let secret = bootstrap::operator_jwt_secret(&cfg).await?;
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
