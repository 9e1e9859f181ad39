//! SCRAM-SHA-256 (RFC 5802, RFC 7677): the password verifiers roles store,
//! and the server side of the exchange that checks a client against one.
//!
//! # Stored verifier
//!
//! A role's password is never stored, only PostgreSQL's verifier text:
//!
//! ```text
//! SCRAM-SHA-256$<iterations>:<salt base64>$<StoredKey base64>:<ServerKey base64>
//!
//! SaltedPassword = PBKDF2-HMAC-SHA-256(SASLprep(password), salt, iterations)
//! ClientKey      = HMAC(SaltedPassword, "Client Key")
//! StoredKey      = SHA-256(ClientKey)
//! ServerKey      = HMAC(SaltedPassword, "Server Key")
//! ```
//!
//! The same text PostgreSQL keeps in `pg_authid.rolpassword`, so a
//! verifier copied from PostgreSQL (`CREATE ROLE … PASSWORD 'SCRAM-SHA-256$…'`)
//! works here, and the other way round.
//!
//! # Exchange (server side)
//!
//! ```text
//! client-first   n,,n=<user>,r=<cnonce>                       (gs2 header "n,," or "y,,")
//! server-first   r=<cnonce><snonce>,s=<salt>,i=<iterations>
//! client-final   c=<base64 gs2 header>,r=<cnonce><snonce>,p=<ClientProof>
//! server-final   v=<ServerSignature>
//!
//! AuthMessage     = client-first-bare "," server-first "," client-final-without-proof
//! ClientSignature = HMAC(StoredKey, AuthMessage)
//! ClientKey       = ClientProof XOR ClientSignature;  SHA-256(ClientKey) must be StoredKey
//! ServerSignature = HMAC(ServerKey, AuthMessage)
//! ```
//!
//! The user name in client-first is ignored (PostgreSQL takes it from the
//! startup packet). A role that does not exist or has no usable verifier
//! gets a *mock* exchange ([`Verifier::mock`]: a salt derived from the name
//! and a per-process secret), so a client learns nothing from the
//! exchange about which roles exist; it fails at the end like a wrong
//! password, as in PostgreSQL. Channel binding (SCRAM-SHA-256-PLUS) is not
//! offered.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use qube_common::{Error, Result};
use ring::rand::SecureRandom;
use ring::{digest, hmac, pbkdf2};

/// PostgreSQL's default `scram_iterations`.
pub const DEFAULT_ITERATIONS: u32 = 4096;
const SALT_LEN: usize = 16;
const NONCE_LEN: usize = 18;

/// A parsed SCRAM-SHA-256 verifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verifier {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub stored_key: [u8; 32],
    pub server_key: [u8; 32],
}

fn hmac_sha256(key: &[u8], data: &[&[u8]]) -> [u8; 32] {
    let k = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut ctx = hmac::Context::with_key(&k);
    for d in data {
        ctx.update(d);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.sign().as_ref());
    out
}

fn sha256(data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, data).as_ref());
    out
}

fn random_bytes(buf: &mut [u8]) -> Result<()> {
    ring::rand::SystemRandom::new()
        .fill(buf)
        .map_err(|_| Error::Internal("the system random generator failed".into()))
}

/// Equal without a timing difference on where they differ.
fn equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The password as SCRAM hashes it: SASLprep'ed when that succeeds,
/// else its bytes as they are (what PostgreSQL does).
fn prepared(password: &str) -> Vec<u8> {
    match stringprep::saslprep(password) {
        Ok(p) => p.as_bytes().to_vec(),
        Err(_) => password.as_bytes().to_vec(),
    }
}

impl Verifier {
    /// A verifier for `password` with a fresh random salt.
    pub fn new(password: &str) -> Result<Verifier> {
        let mut salt = vec![0u8; SALT_LEN];
        random_bytes(&mut salt)?;
        Ok(Verifier::with_salt(password, &salt, DEFAULT_ITERATIONS))
    }

    pub fn with_salt(password: &str, salt: &[u8], iterations: u32) -> Verifier {
        let mut salted = [0u8; 32];
        let n = std::num::NonZeroU32::new(iterations.max(1)).unwrap_or(std::num::NonZeroU32::MIN);
        pbkdf2::derive(pbkdf2::PBKDF2_HMAC_SHA256, n, salt, &prepared(password), &mut salted);
        let client_key = hmac_sha256(&salted, &[b"Client Key"]);
        Verifier {
            iterations,
            salt: salt.to_vec(),
            stored_key: sha256(&client_key),
            server_key: hmac_sha256(&salted, &[b"Server Key"]),
        }
    }

    /// A stand-in for a role without a usable verifier: stable for a
    /// name within this process, and never matched by any password.
    pub fn mock(user: &str, secret: &[u8]) -> Verifier {
        let salt = hmac_sha256(secret, &[b"salt", user.as_bytes()]);
        let stored_key = hmac_sha256(secret, &[b"stored", user.as_bytes()]);
        let server_key = hmac_sha256(secret, &[b"server", user.as_bytes()]);
        Verifier {
            iterations: DEFAULT_ITERATIONS,
            salt: salt[..SALT_LEN].to_vec(),
            stored_key,
            server_key,
        }
    }

    /// Parses PostgreSQL's verifier text; None if it is not one.
    pub fn parse(text: &str) -> Option<Verifier> {
        let rest = text.strip_prefix("SCRAM-SHA-256$")?;
        let (iter_salt, keys) = rest.split_once('$')?;
        let (iter, salt) = iter_salt.split_once(':')?;
        let (stored, server) = keys.split_once(':')?;
        let iterations: u32 = iter.parse().ok().filter(|n| *n > 0)?;
        let salt = B64.decode(salt).ok().filter(|s| !s.is_empty())?;
        let stored_key = B64.decode(stored).ok()?.try_into().ok()?;
        let server_key = B64.decode(server).ok()?.try_into().ok()?;
        Some(Verifier { iterations, salt, stored_key, server_key })
    }

    /// PostgreSQL's text form.
    pub fn to_text(&self) -> String {
        format!(
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(self.stored_key),
            B64.encode(self.server_key)
        )
    }
}

/// What `CREATE ROLE … PASSWORD 'x'` stores: `x` itself when it is already
/// a SCRAM-SHA-256 verifier, else a new verifier of `x`.
pub fn password_to_store(password: &str) -> Result<String> {
    if password.starts_with("SCRAM-SHA-256$") {
        return match Verifier::parse(password) {
            Some(_) => Ok(password.to_string()),
            None => Err(Error::user("22023", "invalid SCRAM-SHA-256 verifier")),
        };
    }
    if password.len() == 35
        && password.starts_with("md5")
        && password[3..].bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err(Error::user(
            "0A000",
            "MD5 password hashes are not supported; give the password or a SCRAM-SHA-256 verifier",
        ));
    }
    Ok(Verifier::new(password)?.to_text())
}

/// Why an exchange failed: the client's messages were malformed (08P01:
/// a protocol violation), or the proof did not match (28P01).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScramError {
    Protocol(String),
    Failed,
}

/// The server's side of one exchange.
pub struct ServerExchange {
    verifier: Verifier,
    client_first_bare: String,
    server_first: String,
    nonce: String,
    gs2_header: String,
}

fn protocol(msg: &str) -> ScramError {
    ScramError::Protocol(msg.to_string())
}

/// The value of attribute `name` (`n=value`) if `part` is one.
fn attr(part: &str, name: char) -> Option<&str> {
    let mut c = part.chars();
    (c.next() == Some(name) && c.next() == Some('=')).then(|| &part[2..])
}

impl ServerExchange {
    /// Reads client-first and answers server-first.
    pub fn start(
        verifier: Verifier,
        client_first: &[u8],
    ) -> std::result::Result<(ServerExchange, String), ScramError> {
        let text = std::str::from_utf8(client_first)
            .map_err(|_| protocol("malformed SCRAM message (invalid UTF-8)"))?;
        // gs2-header: cbind flag, authzid, then client-first-bare.
        let (flag, rest) =
            text.split_once(',').ok_or_else(|| protocol("malformed SCRAM message"))?;
        match flag {
            "n" | "y" => {}
            f if f.starts_with("p=") => {
                return Err(protocol("channel binding was not offered by the server"));
            }
            _ => return Err(protocol("malformed SCRAM message (unexpected channel-binding flag)")),
        }
        let (authzid, bare) =
            rest.split_once(',').ok_or_else(|| protocol("malformed SCRAM message"))?;
        if !authzid.is_empty() {
            return Err(protocol("client uses authorization identity, but it is not supported"));
        }
        let mut parts = bare.split(',');
        let first = parts.next().unwrap_or("");
        if first.starts_with("m=") {
            return Err(protocol("client requires an unsupported SCRAM extension"));
        }
        attr(first, 'n').ok_or_else(|| protocol("malformed SCRAM message (user name expected)"))?;
        let cnonce = parts
            .next()
            .and_then(|p| attr(p, 'r'))
            .filter(|n| !n.is_empty() && n.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b','))
            .ok_or_else(|| protocol("malformed SCRAM message (nonce expected)"))?;
        let mut raw = [0u8; NONCE_LEN];
        random_bytes(&mut raw).map_err(|_| protocol("could not generate random nonce"))?;
        let nonce = format!("{cnonce}{}", B64.encode(raw));
        let server_first =
            format!("r={nonce},s={},i={}", B64.encode(&verifier.salt), verifier.iterations);
        let gs2_header = format!("{flag},{authzid},");
        Ok((
            ServerExchange {
                verifier,
                client_first_bare: bare.to_string(),
                server_first: server_first.clone(),
                nonce,
                gs2_header,
            },
            server_first,
        ))
    }

    /// Reads client-final: Ok(server-final) when the proof matches.
    pub fn finish(&self, client_final: &[u8]) -> std::result::Result<String, ScramError> {
        let text = std::str::from_utf8(client_final)
            .map_err(|_| protocol("malformed SCRAM message (invalid UTF-8)"))?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or_else(|| protocol("malformed SCRAM message (proof expected)"))?;
        let mut parts = without_proof.split(',');
        let cbind = parts
            .next()
            .and_then(|p| attr(p, 'c'))
            .ok_or_else(|| protocol("malformed SCRAM message (channel binding expected)"))?;
        let cbind =
            B64.decode(cbind).map_err(|_| protocol("malformed SCRAM message (channel binding)"))?;
        if cbind != self.gs2_header.as_bytes() {
            return Err(protocol("SCRAM channel binding check failed"));
        }
        let nonce = parts
            .next()
            .and_then(|p| attr(p, 'r'))
            .ok_or_else(|| protocol("malformed SCRAM message (nonce expected)"))?;
        if nonce != self.nonce {
            return Err(protocol("SCRAM nonce mismatch"));
        }
        let proof = B64.decode(proof).map_err(|_| protocol("malformed SCRAM message (proof)"))?;
        if proof.len() != 32 {
            return Err(protocol("malformed SCRAM message (invalid ClientProof length)"));
        }
        let auth_message = [
            self.client_first_bare.as_bytes(),
            b",",
            self.server_first.as_bytes(),
            b",",
            without_proof.as_bytes(),
        ];
        let signature = hmac_sha256(&self.verifier.stored_key, &auth_message);
        let mut client_key = [0u8; 32];
        for i in 0..32 {
            client_key[i] = proof[i] ^ signature[i];
        }
        if !equal(&sha256(&client_key), &self.verifier.stored_key) {
            return Err(ScramError::Failed);
        }
        let server_sig = hmac_sha256(&self.verifier.server_key, &auth_message);
        Ok(format!("v={}", B64.encode(server_sig)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example exchange of RFC 7677, section 3 (user "user", password
    /// "pencil"), with the server nonce the RFC's server chose.
    #[test]
    fn rfc7677_example() {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let v = Verifier::with_salt("pencil", &salt, 4096);
        let client_first_bare = "n=user,r=rOprNGfwEbeRWgbNEkqO";
        let server_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let ex = ServerExchange {
            verifier: v,
            client_first_bare: client_first_bare.into(),
            server_first: server_first.into(),
            nonce: "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into(),
            gs2_header: "n,,".into(),
        };
        let client_final = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        assert_eq!(
            ex.finish(client_final.as_bytes()).unwrap(),
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        // One changed proof byte fails.
        let bad = client_final.replace("p=dHz", "p=dHy");
        assert_eq!(ex.finish(bad.as_bytes()), Err(ScramError::Failed));
        // A different nonce is a protocol error.
        let other = client_final.replace("k0,p=", "k1,p=");
        assert!(matches!(ex.finish(other.as_bytes()), Err(ScramError::Protocol(_))));
    }

    #[test]
    fn verifier_text_round_trips_and_matches_postgres_shape() {
        let v = Verifier::new("secret").unwrap();
        let t = v.to_text();
        assert!(t.starts_with("SCRAM-SHA-256$4096:"), "{t}");
        assert_eq!(Verifier::parse(&t), Some(v));
        for bad in [
            "",
            "SCRAM-SHA-256$",
            "SCRAM-SHA-256$0:AAAA$AA:AA",
            "SCRAM-SHA-256$4096:AAAA$AA:AA",
            "md5abc",
        ] {
            assert_eq!(Verifier::parse(bad), None, "{bad}");
        }
        assert_eq!(password_to_store(&t).unwrap(), t);
        assert_eq!(password_to_store("SCRAM-SHA-256$junk").unwrap_err().sqlstate(), "22023");
        let md5 = format!("md5{}", "0".repeat(32));
        assert_eq!(password_to_store(&md5).unwrap_err().sqlstate(), "0A000");
        // A fresh salt each time.
        assert_ne!(password_to_store("x").unwrap(), password_to_store("x").unwrap());
    }

    #[test]
    fn malformed_client_messages_are_protocol_errors() {
        let v = Verifier::new("pw").unwrap();
        for m in [
            &b""[..],
            b"x",
            b"n,,",
            b"n,,n=u",
            b"n,,n=u,r=",
            b"p=tls-server-end-point,,n=,r=abc",
            b"n,a=admin,n=u,r=abc",
            b"n,,m=ext,n=u,r=abc",
            b"\xff\xfe",
        ] {
            assert!(
                matches!(ServerExchange::start(v.clone(), m), Err(ScramError::Protocol(_))),
                "{:?}",
                String::from_utf8_lossy(m)
            );
        }
        let (ex, first) = ServerExchange::start(v, b"n,,n=,r=abc").unwrap();
        assert!(first.starts_with("r=abc"), "{first}");
        for m in [&b""[..], b"c=biws", b"c=biws,r=abc,p=AAAA", b"c=eSws,r=abc,p=AAAA"] {
            assert!(
                matches!(ex.finish(m), Err(ScramError::Protocol(_))),
                "{:?}",
                String::from_utf8_lossy(m)
            );
        }
    }

    #[test]
    fn mock_verifiers_are_stable_per_name() {
        let a = Verifier::mock("alice", b"k");
        assert_eq!(a, Verifier::mock("alice", b"k"));
        assert_ne!(a.salt, Verifier::mock("bob", b"k").salt);
    }
}
