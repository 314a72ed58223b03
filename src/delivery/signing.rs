//! Webhook signatures: the `X-Signature` header and the Standard Webhooks `webhook-signature` header.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// The prefix of Standard Webhooks secrets; what follows it is the base64 of the real key.
const WHSEC_PREFIX: &str = "whsec_";

/// Base64 as the Standard Webhooks libraries read secrets: the standard alphabet, `=` padding optional.
const WHSEC_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The signing key of a `whsec_` secret: `None` for a secret without the prefix (its bytes are the
/// key), an error for one whose rest is empty or not base64 (refused when a subscription is saved).
pub fn whsec_key(secret: &str) -> Result<Option<Vec<u8>>, &'static str> {
    let Some(encoded) = secret.strip_prefix(WHSEC_PREFIX) else { return Ok(None) };
    if encoded.is_empty() {
        return Err("a whsec_ secret needs its base64 key after the prefix");
    }
    WHSEC_BASE64.decode(encoded).map(Some).map_err(|_| {
        "the part after whsec_ is not base64 (A-Z, a-z, 0-9, +, /, optional = padding); drop the whsec_ prefix to use the text itself as the key"
    })
}

/// `sha256=<lowercase hex of HMAC-SHA256(secret's bytes as given, body)>` — the X-Signature header value.
pub fn x_signature(secret: &str, body: &[u8]) -> String {
    let digest = hmac_sha256(secret.as_bytes(), &[body]);
    let mut out = String::with_capacity(7 + 2 * digest.len());
    out.push_str("sha256=");
    for byte in digest {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    out
}

/// Standard Webhooks `v1,<base64 of HMAC-SHA256(key, "{msg_id}.{timestamp}.{body}")>`.
///
/// The key is the base64-decoded part after `whsec_` (padding optional, as the Standard Webhooks libraries
/// decode it) when the secret has that prefix; for a secret without the prefix, and for a `whsec_` secret
/// stored before such secrets were checked whose rest is not base64, it is the secret's bytes as given.
pub fn standard_webhooks_signature(secret: &str, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let decoded = whsec_key(secret).ok().flatten();
    let key = decoded.as_deref().unwrap_or(secret.as_bytes());
    let timestamp = timestamp.to_string();
    let digest = hmac_sha256(key, &[msg_id.as_bytes(), b".", timestamp.as_bytes(), b".", body]);
    format!("v1,{}", STANDARD.encode(digest))
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// SHA-256's block size: HMAC keys are zero-padded to it, and longer keys are hashed first.
const BLOCK: usize = 64;

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // Preparing the block-sized key here, exactly as RFC 2104 does, makes building the MAC infallible.
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut mac = <HmacSha256 as Mac>::new(&block.into());
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values computed independently with Python's hmac/hashlib/base64 modules.
    const BODY: &[u8] = br#"{"event":{"id":1},"attempt":1}"#;

    #[test]
    fn x_signature_is_hex_hmac_of_the_raw_body() {
        assert_eq!(
            x_signature("s3cret", BODY),
            "sha256=27f2a902c53903cae22c5963d44b2cda701191fe948bc744164b05c348b1a3e3"
        );
    }

    #[test]
    fn x_signature_uses_a_whsec_secret_as_given() {
        // The X-Signature key is the secret's bytes even when it looks like a Standard Webhooks secret.
        assert_ne!(x_signature("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", BODY), x_signature("s3cret", BODY));
        assert_eq!(
            x_signature("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", b"hello"),
            "sha256=c770c8b4e83a988d5236a41db64cb85cf40319a4d0c94a69aacc5703cf225ee4"
        );
    }

    #[test]
    fn keys_of_any_length_follow_rfc_2104() {
        assert_eq!(
            x_signature(&"k".repeat(100), BODY),
            "sha256=40140a7213c998972bb9cd788d888b6c10a10f78635c31d2278d69e25ce69934"
        );
        assert_eq!(
            x_signature(&"k".repeat(64), BODY),
            "sha256=b294b301bd45f05675277b0379665e4f4a8c1c95f8e87e808a2371d7105423ec"
        );
        assert_eq!(standard_webhooks_signature("", "m", 0, BODY), "v1,vmsT8wxqhX5IP9yHgz1BWJpukw0QrbrkJ8l4zqJPDzM=");
    }

    #[test]
    fn standard_webhooks_decodes_a_whsec_secret() {
        // The example from the Standard Webhooks specification.
        assert_eq!(
            standard_webhooks_signature(
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test": 2432232314}"#,
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        assert_eq!(
            standard_webhooks_signature(
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W",
                1674087231,
                BODY
            ),
            "v1,LXM0YZnpBhNcsqzoXIxr7S18a+0L0+yCK/ptUYbG6mU="
        );
    }

    #[test]
    fn whsec_padding_is_optional_and_bad_keys_are_refused() {
        // A 22-byte key: its base64 ends in "==", which the Standard Webhooks libraries do not require.
        let padded = "whsec_dHdlbnR5LXR3byBieXRlIGtleSEhIQ==";
        let unpadded = padded.trim_end_matches('=');
        assert_eq!(whsec_key(padded).unwrap(), whsec_key(unpadded).unwrap());
        assert_eq!(whsec_key(padded).unwrap().unwrap(), b"twenty-two byte key!!!");
        assert_eq!(
            standard_webhooks_signature(padded, "m", 1, BODY),
            standard_webhooks_signature(unpadded, "m", 1, BODY)
        );
        assert_eq!(whsec_key("plain").unwrap(), None);
        assert!(whsec_key("whsec_").is_err());
        assert!(whsec_key("whsec_not*base64!").is_err());
    }

    #[test]
    fn standard_webhooks_uses_a_plain_secret_as_given() {
        assert_eq!(
            standard_webhooks_signature("plain-secret", "d-1", 1_700_000_000, BODY),
            "v1,6EdMpCMZHeKyCSrkiC/8WG5eQxLbqdq/ka1tnqhu79U="
        );
    }

    #[test]
    fn standard_webhooks_falls_back_to_the_whole_secret_when_not_base64() {
        assert_eq!(
            standard_webhooks_signature("whsec_not*base64!", "d-1", 1_700_000_000, BODY),
            "v1,IeKlv0gCehV3pcS/E3BrzcLbGGJQlas/duQCo99DiZY="
        );
    }
}
