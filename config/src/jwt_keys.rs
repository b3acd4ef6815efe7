//! Public keys of bearer JWTs (`[jwt]`): PEM SubjectPublicKeyInfo files
//! (`public_keys`) and one RFC 7517 JWK Set file (`jwks_file`), read and
//! checked when the configuration loads, so a missing file or a bad key stops
//! the daemon at startup with the file and the reason.
//!
//! Keys come out as raw material ([`KeyMaterial`]): RSA modulus and exponent
//! (big-endian, no leading zeros) or the 32 bytes of an Ed25519 key. The
//! protocols crate verifies signatures with them; nothing here does crypto.
//!
//! RSA keys must have a 2048..=8192-bit modulus and an odd exponent in
//! 3..2^33 (what RS256 verification accepts). In a JWK Set, keys that cannot
//! sign tokens this gateway accepts are ignored: `use` other than `sig`,
//! `key_ops` without `verify`, `kty` other than `RSA` and `OKP`/`Ed25519`,
//! `alg` other than `RS256` / `EdDSA`. An `alg` naming the other supported
//! algorithm than the key type's, a duplicate `kid`, or a set with no usable
//! key left are errors.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};

/// `[jwt]`: public keys of bearer JWTs (RS256, EdDSA) and what every token
/// must satisfy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtSettings {
    /// PEM `PUBLIC KEY` files (`jwt.public_keys`, `AGW_JWT_PUBLIC_KEYS` comma-separated).
    pub public_keys: Vec<PathBuf>,
    /// RFC 7517 JWK Set file (`jwt.jwks_file`, `AGW_JWT_JWKS_FILE`).
    pub jwks_file: Option<PathBuf>,
    /// Every usable key read from those files, in file order.
    pub keys: Vec<JwtKey>,
    /// Required `iss` of accepted tokens, and the `iss` of minted ones
    /// (`jwt.issuer`, `AGW_JWT_ISSUER`); unset: not checked.
    pub issuer: Option<String>,
    /// Longest token lifetime minted or accepted, seconds (`jwt.max_ttl_secs`);
    /// 0 = unbounded (for a foreign issuer's long-lived tokens; not advised).
    pub max_ttl_secs: u64,
    /// Clock skew allowed on `exp` and `nbf`, seconds (`jwt.leeway_secs`).
    pub leeway_secs: u64,
}

impl Default for JwtSettings {
    fn default() -> Self {
        Self {
            public_keys: Vec::new(),
            jwks_file: None,
            keys: Vec::new(),
            issuer: None,
            max_ttl_secs: 86_400,
            leeway_secs: 30,
        }
    }
}

/// One verification key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtKey {
    /// The JWK `kid`, if any (PEM keys have none).
    pub kid: Option<String>,
    /// Where it came from (`path` or `path#kid`), for logs.
    pub source: String,
    /// The key itself.
    pub material: KeyMaterial,
}

/// Public key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyMaterial {
    /// RSA (verifies RS256): big-endian modulus and exponent, no leading zeros.
    Rsa {
        /// Modulus.
        n: Vec<u8>,
        /// Public exponent.
        e: Vec<u8>,
    },
    /// Ed25519 (verifies EdDSA): the 32-byte encoded point.
    Ed25519([u8; 32]),
}

impl KeyMaterial {
    /// The JWS `alg` this key verifies: `RS256` or `EdDSA`.
    pub fn alg(&self) -> &'static str {
        match self {
            Self::Rsa { .. } => "RS256",
            Self::Ed25519(_) => "EdDSA",
        }
    }
}

impl super::Loader<'_> {
    /// A list key: a TOML array of strings (or one comma-separated string) in
    /// the file, a comma-separated string in the environment. Blank items are dropped.
    pub(crate) fn list(&mut self, section: &str, key: &str) -> Vec<String> {
        let dotted = format!("{section}.{key}");
        let var = format!("AGW_{}", dotted.replace('.', "_").to_uppercase());
        self.known.insert(dotted.clone());
        let split = |s: &str| -> Vec<String> {
            s.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        };
        if let Some(v) = self.env.var(&var) {
            return split(&v);
        }
        match self
            .file
            .get(section)
            .and_then(toml::Value::as_table)
            .and_then(|t| t.get(key))
        {
            None => Vec::new(),
            Some(toml::Value::String(s)) => split(s),
            Some(toml::Value::Array(items)) => {
                let mut out = Vec::new();
                for item in items {
                    match item.as_str() {
                        Some(s) if !s.trim().is_empty() => out.push(s.trim().to_owned()),
                        Some(_) => {}
                        None => self.errors.push(format!(
                            "invalid {var} / {dotted}: expected an array of strings, got an item of type {}",
                            item.type_str()
                        )),
                    }
                }
                out
            }
            Some(other) => {
                self.errors.push(format!(
                    "invalid {var} / {dotted}: expected an array of strings, got {}",
                    other.type_str()
                ));
                Vec::new()
            }
        }
    }

    /// Reads `[jwt]` and loads every key file, recording each problem.
    pub(super) fn jwt_section(&mut self) -> JwtSettings {
        let public_keys: Vec<PathBuf> = self
            .list("jwt", "public_keys")
            .into_iter()
            .map(PathBuf::from)
            .collect();
        let jwks_file = self
            .opt::<String>(Some("jwt"), "jwks_file")
            .filter(|s| !s.trim().is_empty())
            .map(PathBuf::from);
        let mut keys = Vec::new();
        for path in &public_keys {
            match read_pem_file(path) {
                Ok(found) => keys.extend(found),
                Err(e) => self.errors.push(format!(
                    "invalid AGW_JWT_PUBLIC_KEYS / jwt.public_keys: {}: {e}",
                    path.display()
                )),
            }
        }
        if let Some(path) = &jwks_file {
            match read_jwks_file(path) {
                Ok(found) => keys.extend(found),
                Err(e) => self.errors.push(format!(
                    "invalid AGW_JWT_JWKS_FILE / jwt.jwks_file: {}: {e}",
                    path.display()
                )),
            }
        }
        let mut seen = BTreeSet::new();
        for k in &keys {
            if let Some(kid) = &k.kid
                && !seen.insert(kid.as_str())
            {
                self.errors.push(format!(
                    "invalid AGW_JWT_JWKS_FILE / jwt.jwks_file: duplicate kid {kid:?} ({})",
                    k.source
                ));
            }
        }
        let issuer = self
            .opt::<String>(Some("jwt"), "issuer")
            .filter(|s| !s.trim().is_empty());
        let max_ttl_secs = self.get(Some("jwt"), "max_ttl_secs", 86_400);
        if max_ttl_secs != 0 {
            self.check("jwt", "max_ttl_secs", max_ttl_secs, 60, 365 * 86_400);
        }
        let leeway_secs = self.get(Some("jwt"), "leeway_secs", 30);
        self.check("jwt", "leeway_secs", leeway_secs, 0, 600);
        JwtSettings {
            public_keys,
            jwks_file,
            keys,
            issuer,
            max_ttl_secs,
            leeway_secs,
        }
    }
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))
}

/// Reads every `PUBLIC KEY` block of a PEM file.
fn read_pem_file(path: &Path) -> Result<Vec<JwtKey>, String> {
    let source = path.display().to_string();
    Ok(parse_pem(&read(path)?)?
        .into_iter()
        .map(|material| JwtKey {
            kid: None,
            source: source.clone(),
            material,
        })
        .collect())
}

/// Reads the usable keys of a JWK Set file.
fn read_jwks_file(path: &Path) -> Result<Vec<JwtKey>, String> {
    parse_jwks(&path.display().to_string(), &read(path)?)
}

/// The keys of every `PUBLIC KEY` (SPKI) or `RSA PUBLIC KEY` (PKCS#1) PEM
/// block of `text`; at least one, and no other kind of block.
pub fn parse_pem(text: &str) -> Result<Vec<KeyMaterial>, String> {
    let mut keys = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let after = &rest[start + "-----BEGIN ".len()..];
        let label_end = after.find("-----").ok_or("unterminated PEM BEGIN line")?;
        let label = &after[..label_end];
        let body_and_rest = &after[label_end + 5..];
        let end_marker = format!("-----END {label}-----");
        let end = body_and_rest
            .find(&end_marker)
            .ok_or_else(|| format!("PEM block {label:?} has no END line"))?;
        let body: String = body_and_rest[..end]
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        let der = STANDARD
            .decode(body.as_bytes())
            .map_err(|e| format!("PEM block {label:?} is not valid base64: {e}"))?;
        let key = match label {
            "PUBLIC KEY" => parse_spki(&der),
            "RSA PUBLIC KEY" => parse_rsa_public_key(&der),
            other => Err(format!(
                "found a {other:?} PEM block; expected \"PUBLIC KEY\" (never put a private key or certificate here)"
            )),
        }?;
        keys.push(key);
        rest = &body_and_rest[end + end_marker.len()..];
    }
    if keys.is_empty() {
        return Err("no \"-----BEGIN PUBLIC KEY-----\" PEM block".into());
    }
    Ok(keys)
}

// -- DER ---------------------------------------------------------------------

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const NULL: u8 = 0x05;
const OID: u8 = 0x06;
/// 1.2.840.113549.1.1.1
const OID_RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// 1.3.101.112
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

/// Reads one definite-length DER element of tag `want` off the front of `input`.
fn take<'a>(input: &mut &'a [u8], want: u8) -> Result<&'a [u8], String> {
    let bad = || "malformed DER".to_owned();
    let (&tag, rest) = input.split_first().ok_or_else(bad)?;
    if tag != want {
        return Err(format!(
            "malformed DER: expected tag 0x{want:02x}, found 0x{tag:02x}"
        ));
    }
    let (&first, mut rest) = rest.split_first().ok_or_else(bad)?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return Err(bad());
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return Err(bad());
    }
    let (content, tail) = rest.split_at(len);
    *input = tail;
    Ok(content)
}

/// SubjectPublicKeyInfo ::= SEQUENCE { AlgorithmIdentifier, BIT STRING }.
fn parse_spki(der: &[u8]) -> Result<KeyMaterial, String> {
    let mut outer = der;
    let mut spki = take(&mut outer, SEQUENCE)?;
    if !outer.is_empty() {
        return Err("malformed DER: trailing bytes".into());
    }
    let mut alg = take(&mut spki, SEQUENCE)?;
    let oid = take(&mut alg, OID)?;
    let bits = take(&mut spki, BIT_STRING)?;
    if !spki.is_empty() {
        return Err("malformed DER: trailing bytes in SubjectPublicKeyInfo".into());
    }
    let Some((0, key)) = bits.split_first() else {
        return Err("malformed DER: public key BIT STRING".into());
    };
    if oid == OID_RSA_ENCRYPTION {
        // Parameters: NULL (or absent, which some encoders emit).
        if !alg.is_empty() {
            take(&mut alg, NULL)?;
        }
        if !alg.is_empty() {
            return Err("malformed DER: RSA algorithm parameters".into());
        }
        parse_rsa_public_key(key)
    } else if oid == OID_ED25519 {
        if !alg.is_empty() {
            return Err("malformed DER: Ed25519 takes no algorithm parameters".into());
        }
        ed25519(key)
    } else {
        Err(format!(
            "unsupported key type (OID {}): only RSA and Ed25519 public keys verify tokens",
            oid_text(oid)
        ))
    }
}

/// RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }.
fn parse_rsa_public_key(der: &[u8]) -> Result<KeyMaterial, String> {
    let mut outer = der;
    let mut seq = take(&mut outer, SEQUENCE)?;
    let n = take(&mut seq, INTEGER)?;
    let e = take(&mut seq, INTEGER)?;
    if !outer.is_empty() || !seq.is_empty() {
        return Err("malformed DER: trailing bytes in RSA public key".into());
    }
    if n.first().is_some_and(|b| b & 0x80 != 0) || e.first().is_some_and(|b| b & 0x80 != 0) {
        return Err("malformed DER: negative RSA integer".into());
    }
    rsa(n, e)
}

fn oid_text(oid: &[u8]) -> String {
    let mut arcs: Vec<u64> = Vec::new();
    let mut v = 0u64;
    for &b in oid {
        v = (v << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (v / 40).min(2);
                arcs.extend([first, v - 40 * first]);
            } else {
                arcs.push(v);
            }
            v = 0;
        }
    }
    arcs.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

// -- key checks --------------------------------------------------------------

fn strip_zeros(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[start..]
}

/// Checks an RSA key the way RS256 verification will: 2048..=8192-bit
/// modulus, odd exponent in 3..2^33.
fn rsa(n: &[u8], e: &[u8]) -> Result<KeyMaterial, String> {
    let (n, e) = (strip_zeros(n), strip_zeros(e));
    let bits = n.first().map_or(0, |&top| {
        (n.len() - 1) * 8 + (8 - top.leading_zeros() as usize)
    });
    if bits < 2048 {
        return Err(format!(
            "RSA key of {bits} bits is too small (2048 at least)"
        ));
    }
    if bits > 8192 {
        return Err(format!(
            "RSA key of {bits} bits is too large (8192 at most)"
        ));
    }
    let exp = if e.len() <= 5 {
        e.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
    } else {
        u64::MAX
    };
    if exp < 3 || exp % 2 == 0 || exp >= 1 << 33 {
        return Err("RSA public exponent must be odd and in 3..2^33".into());
    }
    Ok(KeyMaterial::Rsa {
        n: n.to_vec(),
        e: e.to_vec(),
    })
}

fn ed25519(raw: &[u8]) -> Result<KeyMaterial, String> {
    <[u8; 32]>::try_from(raw)
        .map(KeyMaterial::Ed25519)
        .map_err(|_| format!("Ed25519 key is {} bytes, not 32", raw.len()))
}

// -- JWK Set -----------------------------------------------------------------

/// base64url with or without padding (RFC 7515 says without; some tools pad).
const B64URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[derive(serde::Deserialize)]
struct Jwk {
    kty: Option<String>,
    kid: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    key_ops: Option<Vec<String>>,
    alg: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
}

/// The usable keys of a JWK Set document (`source` names the file).
pub fn parse_jwks(source: &str, text: &str) -> Result<Vec<JwtKey>, String> {
    #[derive(serde::Deserialize)]
    struct Set {
        keys: Vec<serde_json::Value>,
    }
    let set: Set = serde_json::from_str(text)
        .map_err(|e| format!("not a JWK Set (JSON object with a \"keys\" array): {e}"))?;
    let mut out = Vec::new();
    for (i, raw) in set.keys.into_iter().enumerate() {
        let jwk: Jwk =
            serde_json::from_value(raw).map_err(|e| format!("keys[{i}]: not a JWK: {e}"))?;
        let name = jwk.kid.as_ref().map_or_else(
            || format!("keys[{i}]"),
            |k| format!("keys[{i}] (kid {k:?})"),
        );
        if let Some(material) = jwk_material(&jwk).map_err(|e| format!("{name}: {e}"))? {
            out.push(JwtKey {
                source: match &jwk.kid {
                    Some(kid) => format!("{source}#{kid}"),
                    None => format!("{source}#keys[{i}]"),
                },
                kid: jwk.kid,
                material,
            });
        }
    }
    if out.is_empty() {
        return Err("no RS256 (RSA) or EdDSA (Ed25519) signature key in the set".into());
    }
    Ok(out)
}

/// The key of one JWK, `None` when it is not one for verifying RS256/EdDSA signatures.
fn jwk_material(jwk: &Jwk) -> Result<Option<KeyMaterial>, String> {
    if jwk.use_.as_deref().is_some_and(|u| u != "sig")
        || jwk
            .key_ops
            .as_ref()
            .is_some_and(|ops| !ops.iter().any(|o| o == "verify"))
    {
        return Ok(None);
    }
    let field = |name: &str, v: &Option<String>| -> Result<Vec<u8>, String> {
        let v = v.as_deref().ok_or_else(|| format!("missing {name:?}"))?;
        B64URL
            .decode(v)
            .map_err(|e| format!("{name:?} is not base64url: {e}"))
    };
    let kty = jwk.kty.as_deref().ok_or("missing \"kty\"")?;
    let own_alg = match (kty, jwk.crv.as_deref()) {
        ("RSA", _) => "RS256",
        ("OKP", Some("Ed25519")) => "EdDSA",
        // EC, oct, X25519, Ed448, ...: not a key this gateway verifies with.
        _ => return Ok(None),
    };
    match jwk.alg.as_deref() {
        None => {}
        Some(a) if a == own_alg => {}
        Some(a @ ("RS256" | "EdDSA")) => {
            return Err(format!("\"alg\" {a:?} does not fit a {kty} key"));
        }
        // RS512, PS256, RSA-OAEP, ...: meant for another algorithm.
        Some(_) => return Ok(None),
    }
    if own_alg == "RS256" {
        rsa(&field("n", &jwk.n)?, &field("e", &jwk.e)?).map(Some)
    } else {
        ed25519(&field("x", &jwk.x)?).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../protocols/tests/fixtures/jwt")
            .join(name)
    }

    #[test]
    fn der_reader_handles_short_and_long_lengths() {
        let mut short: &[u8] = &[0x02, 0x01, 0x05, 0xff];
        assert_eq!(take(&mut short, INTEGER).unwrap(), &[0x05]);
        assert_eq!(short, &[0xff]);
        let mut long = vec![0x04, 0x82, 0x01, 0x00];
        long.extend([7u8; 256]);
        let mut input = long.as_slice();
        assert_eq!(take(&mut input, 0x04).unwrap().len(), 256);
        assert!(input.is_empty());
        // Wrong tag, truncated content, indefinite and oversized lengths.
        assert!(take(&mut &[0x02u8, 0x01, 0x05][..], SEQUENCE).is_err());
        assert!(take(&mut &[0x02u8, 0x03, 0x05][..], INTEGER).is_err());
        assert!(take(&mut &[0x30u8, 0x80, 0, 0][..], SEQUENCE).is_err());
        assert!(take(&mut &[0x30u8, 0x85, 1, 1, 1, 1, 1][..], SEQUENCE).is_err());
        assert!(take(&mut &[][..], SEQUENCE).is_err());
        assert_eq!(oid_text(OID_RSA_ENCRYPTION), "1.2.840.113549.1.1.1");
        assert_eq!(oid_text(OID_ED25519), "1.3.101.112");
    }

    #[test]
    fn pem_fixtures_parse() {
        let rsa = read_pem_file(&fixture("rsa.pem")).unwrap();
        assert_eq!(rsa.len(), 1);
        match &rsa[0].material {
            KeyMaterial::Rsa { n, e } => {
                assert_eq!(n.len(), 256);
                assert_eq!(e, &[1, 0, 1]);
            }
            other @ KeyMaterial::Ed25519(_) => panic!("{other:?}"),
        }
        let ed = read_pem_file(&fixture("ed25519.pem")).unwrap();
        assert_eq!(ed[0].material.alg(), "EdDSA");
        // The JWKS holds the same two keys (plus ignored ones).
        let set = read_jwks_file(&fixture("jwks.json")).unwrap();
        let kids: Vec<_> = set.iter().map(|k| k.kid.as_deref().unwrap()).collect();
        assert_eq!(kids, ["rsa-1", "ed-1"], "enc and EC keys are left out");
        assert_eq!(set[0].material, rsa[0].material);
        assert_eq!(set[1].material, ed[0].material);
    }

    #[test]
    fn bad_pem_is_explained() {
        let err = read_pem_file(&fixture("rsa1024.pem")).unwrap_err();
        assert!(err.contains("1024 bits is too small"), "{err}");
        assert!(
            parse_pem("hello")
                .unwrap_err()
                .contains("no \"-----BEGIN PUBLIC KEY")
        );
        let private = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(parse_pem(private).unwrap_err().contains("\"PRIVATE KEY\""));
        let garbage = "-----BEGIN PUBLIC KEY-----\nMAMCAQA=\n-----END PUBLIC KEY-----\n";
        assert!(parse_pem(garbage).unwrap_err().contains("malformed DER"));
        // An EC P-256 SPKI (id-ecPublicKey).
        let ec = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQECAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAg==\n-----END PUBLIC KEY-----\n";
        let err = parse_pem(ec).unwrap_err();
        assert!(err.contains("OID 1.2.840.10045.2.1"), "{err}");
        assert!(
            read_pem_file(&fixture("missing.pem"))
                .unwrap_err()
                .starts_with("cannot read")
        );
    }

    fn load(text: &str, env: &[(&str, String)]) -> Result<crate::Config, crate::ConfigError> {
        let file = crate::Config::parse_file(Path::new("t.toml"), text)?;
        let env: std::collections::HashMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        crate::Config::from_parts(None, file, &env)
    }

    #[test]
    fn config_loads_pem_and_jwks_keys() {
        let f = |n| fixture(n).display().to_string();
        let text = format!(
            "[jwt]\npublic_keys = ['{}', '{}']\njwks_file = '{}'\n",
            f("rsa.pem"),
            f("ed25519.pem"),
            f("jwks.json")
        );
        let cfg = load(&text, &[]).unwrap();
        let algs: Vec<_> = cfg.jwt.keys.iter().map(|k| k.material.alg()).collect();
        assert_eq!(algs, ["RS256", "EdDSA", "RS256", "EdDSA"]);
        assert_eq!(cfg.jwt.public_keys.len(), 2);
        assert_eq!(cfg.jwt.keys[3].source, format!("{}#ed-1", f("jwks.json")));
        let redacted = toml::to_string(&cfg.redacted()).unwrap();
        assert!(redacted.contains("jwks.json"), "{redacted}");
        // The environment wins, as a comma-separated list.
        let cfg = load(
            &text,
            &[("AGW_JWT_PUBLIC_KEYS", format!(" {} ,", f("ed25519.pem")))],
        )
        .unwrap();
        assert_eq!(cfg.jwt.public_keys, [fixture("ed25519.pem")]);
        assert_eq!(cfg.jwt.keys.len(), 3);
        // No keys configured: none loaded, HS256 only.
        assert_eq!(load("", &[]).unwrap().jwt, JwtSettings::default());
    }

    #[test]
    fn every_bad_key_file_is_a_config_error_naming_it() {
        let f = |n| fixture(n).display().to_string();
        let text = format!(
            "listen = 'nope'\n[jwt]\npublic_keys = ['{}', '{}', '{}']\njwks_file = '{}'\nsecret = 'x'\n",
            f("rsa1024.pem"),
            f("missing.pem"),
            f("jwks.json"),
            f("rsa.pem"),
        );
        let err = load(&text, &[]).unwrap_err();
        let all = err.0.join("\n");
        assert!(all.contains(&format!(
            "invalid AGW_JWT_PUBLIC_KEYS / jwt.public_keys: {}: RSA key of 1024 bits is too small",
            f("rsa1024.pem")
        )), "{all}");
        assert!(
            all.contains(&format!(
                "invalid AGW_JWT_PUBLIC_KEYS / jwt.public_keys: {}: cannot read",
                f("missing.pem")
            )),
            "{all}"
        );
        assert!(all.contains(&format!(
            "invalid AGW_JWT_PUBLIC_KEYS / jwt.public_keys: {}: no \"-----BEGIN PUBLIC KEY-----\"",
            f("jwks.json")
        )), "{all}");
        assert!(
            all.contains(&format!(
                "invalid AGW_JWT_JWKS_FILE / jwt.jwks_file: {}: not a JWK Set",
                f("rsa.pem")
            )),
            "{all}"
        );
        assert!(all.contains("unknown key jwt.secret"), "{all}");
        assert!(all.contains("invalid AGW_LISTEN / listen"), "{all}");
        assert_eq!(err.0.len(), 6, "{all}");
        let err = load("[jwt]\npublic_keys = [1]\n", &[]).unwrap_err();
        assert!(err.0[0].contains("expected an array of strings"), "{err}");
    }

    #[test]
    fn jwk_rules() {
        let rsa_n = B64URL.encode([0xc0u8; 256]);
        let set = |keys: &str| parse_jwks("t.json", &format!("{{\"keys\":[{keys}]}}"));
        let rsa_key = format!("{{\"kty\":\"RSA\",\"kid\":\"r\",\"n\":\"{rsa_n}\",\"e\":\"AQAB\"}}");
        assert_eq!(set(&rsa_key).unwrap()[0].source, "t.json#r");
        // alg naming the other supported algorithm is an error, an unrelated one ignored.
        let mismatch = rsa_key.replace("\"kid\"", "\"alg\":\"EdDSA\",\"kid\"");
        assert!(
            set(&mismatch)
                .unwrap_err()
                .contains("does not fit a RSA key")
        );
        let ps256 = rsa_key.replace("\"kid\"", "\"alg\":\"PS256\",\"kid\"");
        assert!(set(&ps256).unwrap_err().contains("no RS256"));
        let verify_only = rsa_key.replace("\"kid\"", "\"key_ops\":[\"encrypt\"],\"kid\"");
        assert!(set(&verify_only).is_err());
        let small = rsa_key.replace(&rsa_n, &B64URL.encode([0xc0u8; 128]));
        assert!(
            set(&small)
                .unwrap_err()
                .contains("keys[0] (kid \"r\"): RSA key of 1024 bits")
        );
        let even_e = rsa_key.replace("AQAB", "AQAC");
        assert!(set(&even_e).unwrap_err().contains("exponent"));
        let no_n = "{\"kty\":\"RSA\",\"e\":\"AQAB\"}";
        assert!(set(no_n).unwrap_err().contains("keys[0]: missing \"n\""));
        let short_x = "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"AAAA\"}";
        assert!(set(short_x).unwrap_err().contains("3 bytes, not 32"));
        assert!(
            parse_jwks("t.json", "[]")
                .unwrap_err()
                .contains("not a JWK Set")
        );
    }
}
