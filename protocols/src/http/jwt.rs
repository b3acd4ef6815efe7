//! Bearer JWTs (RFC 7519 / 7515 compact form): HS256 with the gateway's
//! secret (the tokens it mints), RS256 and EdDSA (Ed25519) with the public
//! keys the operator configured (`[jwt]`, see [`agw_config::JwtSettings`]).
//!
//! Verification is strict and fails closed — every failure is a 401:
//! - `alg` must be `HS256`, `RS256` or `EdDSA` (never `none`), and no `crit`
//!   header;
//! - with a `kid` the key is the one with that `kid` (none → refused) and its
//!   type must fit `alg`; without one, every key of `alg`'s type is tried;
//! - HS256 verifies only with the HMAC secret (in constant time), never with a
//!   public key, so a token "signed" with a public key as the secret fails;
//! - then `exp` must be in the future and `nbf` (if present) not in the
//!   future, both within the configured leeway; `aud` must name the
//!   configured audience, `iss` the configured issuer (when one is set), the
//!   lifetime (`exp - iat`, or what is left of it without `iat`) must be at
//!   most the configured maximum, and `sub` / `tenant` must be present.

use agw_config::{JwtKey, KeyMaterial};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use ring::signature::{self as sig, RsaPublicKeyComponents, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Claims the gateway issues and requires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The subject (a neuron, user or client id).
    pub sub: String,
    /// The tenant the token acts for (an API key owner name).
    pub tenant: String,
    /// Audience (`bigbrain` by default).
    pub aud: Audience,
    /// Issued at, Unix seconds (0 when a foreign issuer left it out).
    #[serde(default)]
    pub iat: i64,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// Issuer, when the gateway has one configured (or the foreign issuer's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
}

/// `aud` as a single string or a list (both are valid JWT).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    /// One audience.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, want: &str) -> bool {
        match self {
            Self::One(a) => a == want,
            Self::Many(v) => v.iter().any(|a| a == want),
        }
    }
}

/// Why a token was refused (the message goes to the client).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Not three base64url parts of JSON.
    #[error("malformed token")]
    Malformed,
    /// `alg` is not HS256, RS256 or EdDSA, no key of that type is
    /// configured, or the `kid` names a key of another type.
    #[error("unsupported token algorithm")]
    Algorithm,
    /// The `kid` names no configured key.
    #[error("unknown token key")]
    UnknownKey,
    /// Signature mismatch.
    #[error("bad token signature")]
    Signature,
    /// `exp` has passed.
    #[error("token expired")]
    Expired,
    /// `nbf` is still in the future.
    #[error("token not yet valid")]
    NotYetValid,
    /// `aud` does not name this gateway.
    #[error("token audience mismatch")]
    Audience,
    /// `iss` is not the configured issuer.
    #[error("token issuer mismatch")]
    Issuer,
    /// The token lives longer than the configured maximum.
    #[error("token lifetime over the maximum")]
    Lifetime,
}

/// What a token must satisfy besides its signature.
#[derive(Debug, Clone, Copy)]
pub struct Validation<'a> {
    /// Required `aud`.
    pub audience: &'a str,
    /// Required `iss`, if any.
    pub issuer: Option<&'a str>,
    /// Longest lifetime, seconds (`None`: unbounded).
    pub max_ttl_secs: Option<i64>,
    /// Clock skew allowed on `exp` and `nbf`, seconds.
    pub leeway_secs: i64,
}

fn mac(secret: &[u8], signing_input: &str) -> Hmac<Sha256> {
    // HMAC takes keys of any length, so construction cannot fail.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    m.update(signing_input.as_bytes());
    m
}

/// Signs `claims` with HS256.
pub fn encode(secret: &[u8], claims: &Claims) -> String {
    let header = B64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = B64.encode(serde_json::to_vec(claims).unwrap_or_default());
    let input = format!("{header}.{payload}");
    let sig = B64.encode(mac(secret, &input).finalize().into_bytes());
    format!("{input}.{sig}")
}

/// Verifies an HS256 token at `now` (Unix seconds) for `audience`.
pub fn decode(secret: &[u8], token: &str, audience: &str, now: i64) -> Result<Claims, JwtError> {
    decode_with(secret, &[], token, audience, now)
}

/// Verifies a token at `now` (Unix seconds) for `audience`: HS256 with
/// `secret`, RS256 / EdDSA with `public_keys`; no issuer, lifetime or leeway
/// rule.
pub fn decode_with(
    secret: &[u8],
    public_keys: &[JwtKey],
    token: &str,
    audience: &str,
    now: i64,
) -> Result<Claims, JwtError> {
    let rules = Validation {
        audience,
        issuer: None,
        max_ttl_secs: None,
        leeway_secs: 0,
    };
    decode_validated(secret, public_keys, token, &rules, now)
}

/// Verifies a token at `now` (Unix seconds) against `rules`: HS256 with
/// `secret`, RS256 / EdDSA with `public_keys`.
pub fn decode_validated(
    secret: &[u8],
    public_keys: &[JwtKey],
    token: &str,
    rules: &Validation<'_>,
    now: i64,
) -> Result<Claims, JwtError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    #[derive(Deserialize)]
    struct Header {
        alg: String,
        kid: Option<String>,
        crit: Option<serde_json::Value>,
    }
    let header: Header = B64
        .decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(JwtError::Malformed)?;
    if header.crit.is_some() {
        // RFC 7515 §4.1.11: extensions this verifier does not know must refuse.
        return Err(JwtError::Malformed);
    }
    let alg = header.alg.as_str();
    if !matches!(alg, "HS256" | "RS256" | "EdDSA") {
        return Err(JwtError::Algorithm);
    }
    let signature = B64.decode(s).map_err(|_| JwtError::Malformed)?;
    let input = format!("{h}.{p}");
    if let Some(kid) = &header.kid {
        let key = public_keys
            .iter()
            .find(|k| k.kid.as_deref() == Some(kid.as_str()))
            .ok_or(JwtError::UnknownKey)?;
        if key.material.alg() != alg {
            return Err(JwtError::Algorithm);
        }
        if !verify(&key.material, input.as_bytes(), &signature) {
            return Err(JwtError::Signature);
        }
    } else if alg == "HS256" {
        mac(secret, &input)
            .verify_slice(&signature)
            .map_err(|_| JwtError::Signature)?;
    } else {
        let mut candidates = public_keys
            .iter()
            .filter(|k| k.material.alg() == alg)
            .peekable();
        if candidates.peek().is_none() {
            return Err(JwtError::Algorithm);
        }
        if !candidates.any(|k| verify(&k.material, input.as_bytes(), &signature)) {
            return Err(JwtError::Signature);
        }
    }
    #[derive(Deserialize)]
    struct Times {
        nbf: Option<i64>,
    }
    let payload = B64.decode(p).map_err(|_| JwtError::Malformed)?;
    let claims: Claims = serde_json::from_slice(&payload).map_err(|_| JwtError::Malformed)?;
    let times: Times = serde_json::from_slice(&payload).map_err(|_| JwtError::Malformed)?;
    if claims.exp.saturating_add(rules.leeway_secs) <= now {
        return Err(JwtError::Expired);
    }
    if times
        .nbf
        .is_some_and(|nbf| nbf > now.saturating_add(rules.leeway_secs))
    {
        return Err(JwtError::NotYetValid);
    }
    if !claims.aud.contains(rules.audience) {
        return Err(JwtError::Audience);
    }
    if let Some(issuer) = rules.issuer
        && claims.iss.as_deref() != Some(issuer)
    {
        return Err(JwtError::Issuer);
    }
    if let Some(max) = rules.max_ttl_secs {
        let from = if claims.iat > 0 { claims.iat } else { now };
        if claims.exp.saturating_sub(from) > max {
            return Err(JwtError::Lifetime);
        }
    }
    Ok(claims)
}

/// RS256 (RSASSA-PKCS1-v1_5 with SHA-256) or Ed25519 over `msg`.
fn verify(key: &KeyMaterial, msg: &[u8], signature: &[u8]) -> bool {
    match key {
        KeyMaterial::Rsa { n, e } => RsaPublicKeyComponents { n, e }
            .verify(&sig::RSA_PKCS1_2048_8192_SHA256, msg, signature)
            .is_ok(),
        KeyMaterial::Ed25519(x) => UnparsedPublicKey::new(&sig::ED25519, x)
            .verify(msg, signature)
            .is_ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> Claims {
        Claims {
            sub: "n1".into(),
            tenant: "acme".into(),
            aud: Audience::One("bigbrain".into()),
            iat: 0,
            exp,
            iss: None,
        }
    }

    #[test]
    fn round_trip_and_every_refusal() {
        let t = encode(b"secret", &claims(100));
        assert_eq!(decode(b"secret", &t, "bigbrain", 50), Ok(claims(100)));
        assert_eq!(
            decode(b"other", &t, "bigbrain", 50),
            Err(JwtError::Signature)
        );
        assert_eq!(
            decode(b"secret", &t, "bigbrain", 100),
            Err(JwtError::Expired)
        );
        assert_eq!(
            decode(b"secret", &t, "elsewhere", 50),
            Err(JwtError::Audience)
        );
        assert_eq!(
            decode(b"secret", "a.b", "bigbrain", 50),
            Err(JwtError::Malformed)
        );
        // alg=none with an empty signature must not pass.
        let (_, rest) = t.split_once('.').unwrap();
        let (payload, _) = rest.split_once('.').unwrap();
        let none = format!("{}.{payload}.", B64.encode(br#"{"alg":"none"}"#));
        assert_eq!(
            decode(b"secret", &none, "bigbrain", 50),
            Err(JwtError::Algorithm)
        );
        // A tampered payload (another tenant) fails the signature.
        let forged_payload = B64.encode(
            serde_json::to_vec(&Claims {
                tenant: "evil".into(),
                ..claims(100)
            })
            .unwrap(),
        );
        let (header, _) = t.split_once('.').unwrap();
        let sig = t.rsplit_once('.').unwrap().1;
        let forged = format!("{header}.{forged_payload}.{sig}");
        assert_eq!(
            decode(b"secret", &forged, "bigbrain", 50),
            Err(JwtError::Signature)
        );
    }

    #[test]
    fn audience_lists_are_accepted() {
        let c = Claims {
            aud: Audience::Many(vec!["x".into(), "bigbrain".into()]),
            ..claims(100)
        };
        assert!(decode(b"k", &encode(b"k", &c), "bigbrain", 1).is_ok());
    }

    fn rules(issuer: Option<&str>, max_ttl: Option<i64>, leeway: i64) -> Validation<'_> {
        Validation {
            audience: "bigbrain",
            issuer,
            max_ttl_secs: max_ttl,
            leeway_secs: leeway,
        }
    }

    #[test]
    fn issuer_is_checked_when_configured() {
        let plain = encode(b"k", &claims(100));
        let ours = encode(
            b"k",
            &Claims {
                iss: Some("agw".into()),
                ..claims(100)
            },
        );
        let theirs = encode(
            b"k",
            &Claims {
                iss: Some("other".into()),
                ..claims(100)
            },
        );
        let check = |t: &str, iss| decode_validated(b"k", &[], t, &rules(iss, None, 0), 1);
        assert!(check(&plain, None).is_ok(), "not checked when unset");
        assert!(check(&ours, Some("agw")).is_ok());
        assert_eq!(check(&theirs, Some("agw")), Err(JwtError::Issuer));
        assert_eq!(
            check(&plain, Some("agw")),
            Err(JwtError::Issuer),
            "missing iss"
        );
    }

    #[test]
    fn lifetime_is_bounded() {
        let long = encode(
            b"k",
            &Claims {
                iat: 1_000,
                ..claims(1_000 + 7_200)
            },
        );
        let check = |max| decode_validated(b"k", &[], &long, &rules(None, max, 0), 2_000);
        assert_eq!(check(Some(3_600)), Err(JwtError::Lifetime));
        assert!(check(Some(7_200)).is_ok());
        // Without iat, what is left of it counts.
        let no_iat = encode(b"k", &claims(2_000 + 7_200));
        let check = |max| decode_validated(b"k", &[], &no_iat, &rules(None, max, 0), 2_000);
        assert_eq!(check(Some(3_600)), Err(JwtError::Lifetime));
        assert!(check(Some(7_200)).is_ok());
    }

    #[test]
    fn leeway_covers_clock_skew_only() {
        let t = encode(b"k", &claims(100));
        let check = |now, leeway| decode_validated(b"k", &[], &t, &rules(None, None, leeway), now);
        assert_eq!(check(110, 0), Err(JwtError::Expired));
        assert!(check(110, 30).is_ok(), "10 s late, within 30 s of leeway");
        assert_eq!(check(131, 30), Err(JwtError::Expired));
    }
}

/// RS256 / EdDSA against keys and tokens made independently (PyJWT +
/// cryptography, `protocols/tests/fixtures/jwt/generate.py`).
#[cfg(test)]
mod public_key_tests {
    use std::collections::HashMap;

    use super::*;

    const NOW: i64 = 1_800_000_000;
    const SECRET: &[u8] = b"gateway-secret";
    const RSA_PEM: &str = include_str!("../../tests/fixtures/jwt/rsa.pem");
    const ED_PEM: &str = include_str!("../../tests/fixtures/jwt/ed25519.pem");
    const JWKS: &str = include_str!("../../tests/fixtures/jwt/jwks.json");

    fn token(name: &str) -> String {
        let all: HashMap<String, String> =
            serde_json::from_str(include_str!("../../tests/fixtures/jwt/tokens.json")).unwrap();
        all.get(name)
            .unwrap_or_else(|| panic!("no token {name}"))
            .clone()
    }

    fn pem(text: &str) -> Vec<JwtKey> {
        agw_config::parse_pem(text)
            .unwrap()
            .into_iter()
            .map(|material| JwtKey {
                kid: None,
                source: "pem".into(),
                material,
            })
            .collect()
    }

    fn jwks() -> Vec<JwtKey> {
        agw_config::parse_jwks("jwks.json", JWKS).unwrap()
    }

    fn both_pems() -> Vec<JwtKey> {
        [pem(RSA_PEM), pem(ED_PEM)].concat()
    }

    fn check(keys: &[JwtKey], name: &str) -> Result<Claims, JwtError> {
        decode_with(SECRET, keys, &token(name), "bigbrain", NOW)
    }

    fn acme() -> Claims {
        Claims {
            sub: "n1".into(),
            tenant: "acme".into(),
            aud: Audience::One("bigbrain".into()),
            iat: 1_700_000_000,
            exp: 4_102_444_800,
            iss: None,
        }
    }

    fn rebuilt(header: &str, token: &str) -> String {
        let (_, rest) = token.split_once('.').unwrap();
        format!("{}.{rest}", B64.encode(header))
    }

    #[test]
    fn rs256_and_eddsa_verify_with_pem_keys() {
        assert_eq!(check(&pem(RSA_PEM), "rs256"), Ok(acme()));
        assert_eq!(check(&pem(ED_PEM), "eddsa"), Ok(acme()));
        assert_eq!(check(&both_pems(), "rs256"), Ok(acme()));
        assert_eq!(check(&both_pems(), "eddsa"), Ok(acme()));
        // No key of the token's type configured.
        assert_eq!(check(&pem(ED_PEM), "rs256"), Err(JwtError::Algorithm));
        assert_eq!(check(&pem(RSA_PEM), "eddsa"), Err(JwtError::Algorithm));
        assert_eq!(check(&[], "rs256"), Err(JwtError::Algorithm));
        // PEM keys have no kid, so a token naming one finds no key.
        assert_eq!(check(&both_pems(), "rs256_kid"), Err(JwtError::UnknownKey));
    }

    #[test]
    fn jwks_keys_are_picked_by_kid_or_by_alg() {
        assert_eq!(check(&jwks(), "rs256_kid"), Ok(acme()));
        assert_eq!(check(&jwks(), "eddsa_kid"), Ok(acme()));
        assert_eq!(check(&jwks(), "rs256"), Ok(acme()));
        assert_eq!(check(&jwks(), "eddsa"), Ok(acme()));
        let listed = check(&jwks(), "rs256_aud_list").unwrap();
        assert_eq!(
            listed.aud,
            Audience::Many(vec!["other".into(), "bigbrain".into()])
        );
        // HS256 tokens of the gateway keep working next to public keys.
        let own = encode(SECRET, &acme());
        assert_eq!(
            decode_with(SECRET, &jwks(), &own, "bigbrain", NOW),
            Ok(acme())
        );
    }

    #[test]
    fn unknown_kid_and_wrong_keys_are_refused() {
        assert_eq!(
            check(&jwks(), "rs256_unknown_kid"),
            Err(JwtError::UnknownKey)
        );
        // The `use: enc` key of the set is never a verification key.
        assert_eq!(
            check(&jwks(), "rs256_enc_key_kid"),
            Err(JwtError::UnknownKey)
        );
        assert_eq!(
            check(&pem(RSA_PEM), "rs256_wrong_key"),
            Err(JwtError::Signature)
        );
        assert_eq!(
            check(&pem(ED_PEM), "eddsa_wrong_key"),
            Err(JwtError::Signature)
        );
        assert_eq!(check(&jwks(), "rs256_wrong_key"), Err(JwtError::Signature));
        assert_eq!(
            check(&jwks(), "rs256_wrong_key_kid"),
            Err(JwtError::Signature)
        );
    }

    #[test]
    fn alg_must_fit_the_key_type() {
        assert_eq!(
            check(&jwks(), "eddsa_header_rsa_kid"),
            Err(JwtError::Algorithm)
        );
        assert_eq!(
            check(&jwks(), "rs256_header_ed_kid"),
            Err(JwtError::Algorithm)
        );
        for name in ["rs256_alg_ps256", "rs256_alg_rs512"] {
            assert_eq!(check(&jwks(), name), Err(JwtError::Algorithm), "{name}");
        }
        // A valid RS256 signature relabelled EdDSA (and back) fails.
        let rs = token("rs256");
        let as_ed = rebuilt(r#"{"alg":"EdDSA"}"#, &rs);
        assert_eq!(
            decode_with(SECRET, &both_pems(), &as_ed, "bigbrain", NOW),
            Err(JwtError::Signature)
        );
        // alg none, with or without a kid, and HS256 naming a public key's kid.
        for header in [
            r#"{"alg":"none"}"#,
            r#"{"alg":"none","kid":"rsa-1"}"#,
            r#"{"alg":"RS256 "}"#,
        ] {
            let forged = rebuilt(header, &rs);
            assert_eq!(
                decode_with(SECRET, &jwks(), &forged, "bigbrain", NOW),
                Err(JwtError::Algorithm),
                "{header}"
            );
        }
        let hs = encode(SECRET, &acme());
        let with_kid = rebuilt(r#"{"alg":"HS256","kid":"rsa-1"}"#, &hs);
        assert_eq!(
            decode_with(SECRET, &jwks(), &with_kid, "bigbrain", NOW),
            Err(JwtError::Algorithm)
        );
        // Unknown critical header extensions.
        let crit = rebuilt(r#"{"alg":"RS256","crit":["exp"],"exp":1}"#, &rs);
        assert_eq!(
            decode_with(SECRET, &jwks(), &crit, "bigbrain", NOW),
            Err(JwtError::Malformed)
        );
    }

    #[test]
    fn hs256_signed_with_a_public_key_as_secret_is_refused() {
        for name in [
            "hs256_rsa_pem_secret",
            "hs256_rsa_der_secret",
            "hs256_ed_pem_secret",
        ] {
            for keys in [jwks(), both_pems()] {
                assert_eq!(check(&keys, name), Err(JwtError::Signature), "{name}");
            }
        }
        // Sanity: the token really is HMAC-SHA256 keyed with the PEM text.
        assert_eq!(
            decode(
                RSA_PEM.as_bytes(),
                &token("hs256_rsa_pem_secret"),
                "bigbrain",
                NOW
            ),
            Ok(acme())
        );
    }

    #[test]
    fn claims_are_checked_after_the_signature() {
        for name in ["rs256_expired", "eddsa_expired"] {
            assert_eq!(check(&jwks(), name), Err(JwtError::Expired), "{name}");
        }
        for name in ["rs256_wrong_aud", "eddsa_wrong_aud"] {
            assert_eq!(check(&jwks(), name), Err(JwtError::Audience), "{name}");
        }
        assert_eq!(check(&jwks(), "rs256_nbf_2099"), Err(JwtError::NotYetValid));
        assert!(
            decode_with(
                SECRET,
                &jwks(),
                &token("rs256_nbf_2099"),
                "bigbrain",
                4_080_000_000
            )
            .is_ok()
        );
        assert_eq!(check(&jwks(), "rs256_no_tenant"), Err(JwtError::Malformed));
        // Another tenant in the payload breaks the signature.
        for name in ["rs256_kid", "eddsa"] {
            let t = token(name);
            let mut parts: Vec<&str> = t.split('.').collect();
            let forged = B64.encode(
                serde_json::to_vec(&Claims {
                    tenant: "evil".into(),
                    ..acme()
                })
                .unwrap(),
            );
            parts[1] = &forged;
            assert_eq!(
                decode_with(SECRET, &jwks(), &parts.join("."), "bigbrain", NOW),
                Err(JwtError::Signature),
                "{name}"
            );
        }
    }
}
