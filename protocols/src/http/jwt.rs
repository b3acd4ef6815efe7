//! Bearer JWTs: HS256 only (RFC 7519 / 7515 compact form). Verification is
//! strict — the header must say `HS256` (never `none`), the signature must
//! match in constant time, `exp` must be in the future and `aud` must name
//! the configured audience — and every failure is a 401.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
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
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Expiry, Unix seconds.
    pub exp: i64,
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
    /// `alg` is not HS256.
    #[error("unsupported token algorithm (HS256 required)")]
    Algorithm,
    /// Signature mismatch.
    #[error("bad token signature")]
    Signature,
    /// `exp` has passed.
    #[error("token expired")]
    Expired,
    /// `aud` does not name this gateway.
    #[error("token audience mismatch")]
    Audience,
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

/// Verifies a token at `now` (Unix seconds) for `audience`.
pub fn decode(secret: &[u8], token: &str, audience: &str, now: i64) -> Result<Claims, JwtError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    #[derive(Deserialize)]
    struct Header {
        alg: String,
    }
    let header: Header = B64
        .decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(JwtError::Malformed)?;
    if header.alg != "HS256" {
        return Err(JwtError::Algorithm);
    }
    let sig = B64.decode(s).map_err(|_| JwtError::Malformed)?;
    mac(secret, &format!("{h}.{p}"))
        .verify_slice(&sig)
        .map_err(|_| JwtError::Signature)?;
    let claims: Claims = B64
        .decode(p)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(JwtError::Malformed)?;
    if claims.exp <= now {
        return Err(JwtError::Expired);
    }
    if !claims.aud.contains(audience) {
        return Err(JwtError::Audience);
    }
    Ok(claims)
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
}
