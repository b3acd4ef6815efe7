//! Intent Bus strict-mode signing, byte-compatible with the Python SDKs:
//! `quote(v, safe='')` query encoding, key-sorted canonical path, and
//! lowercase hex HMAC-SHA256 over `METHOD\nPATH\nTIMESTAMP\nNONCE\nBODY`.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac as _};
use sha2::Sha256;

/// The four authentication headers of one signed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SignedHeaders {
    /// `X-Timestamp`: unix seconds as decimal text.
    pub(crate) timestamp: String,
    /// `X-Nonce`: 32 lowercase hex characters, fresh per request.
    pub(crate) nonce: String,
    /// `X-Signature`: lowercase hex HMAC-SHA256.
    pub(crate) signature: String,
}

/// Percent-encodes every byte of `s` except the RFC 3986 unreserved set
/// `A-Z a-z 0-9 _ . - ~`, exactly like Python's `quote(s, safe='')`.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'~') {
            out.push(char::from(b));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// `path` followed, when `query` is not empty, by `?` and the `k=v` pairs
/// sorted by key (stable, like the SDK's `sorted(..., key=item[0])`), each
/// key and value encoded with [`quote`]. This is both what the SDK signs and
/// the request target it sends.
pub(crate) fn canonical_path(path: &str, query: &[(&str, &str)]) -> String {
    if query.is_empty() {
        return path.to_owned();
    }
    let mut pairs = query.to_vec();
    pairs.sort_by_key(|&(k, _)| k);
    let mut out = String::from(path);
    for (i, (k, v)) in pairs.into_iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(&quote(k));
        out.push('=');
        out.push_str(&quote(v));
    }
    out
}

/// Lowercase hex HMAC-SHA256 keyed with `api_key` over
/// `METHOD\nCANONICAL_PATH\nTIMESTAMP\nNONCE\nBODY`; `body` is the exact
/// bytes sent (empty when there is none).
pub(crate) fn signature(
    api_key: &str,
    method: &str,
    canonical_path: &str,
    timestamp: &str,
    nonce: &str,
    body: &[u8],
) -> String {
    let mut mac = <Hmac<Sha256>>::new_from_slice(api_key.as_bytes())
        .expect("HMAC accepts keys of any length");
    for part in [
        method.to_ascii_uppercase().as_bytes(),
        canonical_path.as_bytes(),
        timestamp.as_bytes(),
        nonce.as_bytes(),
    ] {
        mac.update(part);
        mac.update(b"\n");
    }
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Signs one request now, with a fresh random nonce.
pub(crate) fn sign_now(
    api_key: &str,
    method: &str,
    canonical_path: &str,
    body: &[u8],
) -> SignedHeaders {
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .to_string();
    let nonce = hex::encode(rand::random::<[u8; 16]>());
    let signature = signature(api_key, method, canonical_path, &timestamp, &nonce, body);
    SignedHeaders {
        timestamp,
        nonce,
        signature,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values below were computed independently with CPython:
    //   quote(str(v), safe='') from urllib.parse, sorted(params, key=lambda i: i[0]),
    //   hmac.new(key.encode(), b"\n".join([m, path, ts, nonce, body]), hashlib.sha256).hexdigest()
    const KEY: &str = "agw_testkey";
    const TS: &str = "1700000000";
    const NONCE: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn quote_matches_python_safe_empty() {
        assert_eq!(quote("acme/echo"), "acme%2Fecho");
        assert_eq!(quote("a b~c*é/+&=_.-"), "a%20b~c%2A%C3%A9%2F%2B%26%3D_.-");
        assert_eq!(quote(""), "");
    }

    #[test]
    fn canonical_path_sorts_and_encodes() {
        assert_eq!(canonical_path("/status/abc", &[]), "/status/abc");
        assert_eq!(
            canonical_path("/claim", &[("namespace", "default"), ("goal", "acme/echo")]),
            "/claim?goal=acme%2Fecho&namespace=default"
        );
        assert_eq!(
            canonical_path(
                "/claim",
                &[
                    ("publisher", "k&y=1"),
                    ("goal", "x y"),
                    ("wait", "5"),
                    ("namespace", "team/α"),
                ]
            ),
            "/claim?goal=x%20y&namespace=team%2F%CE%B1&publisher=k%26y%3D1&wait=5"
        );
    }

    #[test]
    fn signature_of_claim_matches_python() {
        let path = canonical_path("/claim", &[("namespace", "default"), ("goal", "acme/echo")]);
        assert_eq!(
            signature(KEY, "POST", &path, TS, NONCE, b""),
            "9faf9e8b386b35675bfa530d666fc500f9757ea4b876845e7cc799d89a69ff8c"
        );
    }

    #[test]
    fn signature_of_fulfill_body_matches_python() {
        let body = br#"{"claim_token":"tok","result":{"ok":true},"result_type":"json"}"#;
        assert_eq!(
            signature(KEY, "post", "/fulfill/abc", TS, NONCE, body),
            "f9c75b8ae1bcf1424bd1b4f213f9abb9eba8c488853b712a4acb40797c0cbf3d"
        );
    }

    #[test]
    fn sign_now_shapes_headers() {
        let h = sign_now(KEY, "GET", "/healthz", b"");
        assert_eq!(h.nonce.len(), 32);
        assert!(
            h.nonce
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert!(h.timestamp.parse::<u64>().is_ok_and(|t| t > 1_600_000_000));
        assert_eq!(
            h.signature,
            signature(KEY, "GET", "/healthz", &h.timestamp, &h.nonce, b"")
        );
        assert_ne!(sign_now(KEY, "GET", "/", b"").nonce, h.nonce);
    }
}
